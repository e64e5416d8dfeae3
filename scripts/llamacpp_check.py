#!/usr/bin/env python3
"""Print llama.cpp's last-position logits for given token ids, as JSON.

Manual tool (not run in CI) to check that a GGUF file -- e.g. one written by our Rust
quantizer -- loads in llama.cpp and computes the expected function.

    pip install llama-cpp-python        # builds llama.cpp from source (CPU)
    python scripts/llamacpp_check.py MODEL.gguf '[612, 606, 224]'
    python scripts/llamacpp_check.py MODEL.gguf ids.json            # file holding a JSON list
    python scripts/llamacpp_check.py MODEL.gguf tests/fixtures/tiny-pow2/reference.json

With a JSON list (literal or file) it prints {"n_vocab": V, "input_ids": [...], "logits": [...]}.
With a reference.json (an object with "cases") it evaluates every case's input_ids and prints,
per case, llama.cpp's logits plus max |llama.cpp - reference| and whether the argmax / top-5
agree; the exit status is 1 if any max abs diff exceeds --tol.

Evaluation uses a float32 KV cache (llama.cpp defaults to f16) and a fresh context per
sequence; no BOS is added (the ids are used exactly as given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load_ids_arg(arg: str):
    p = Path(arg)
    if p.is_file():
        return json.loads(p.read_text(encoding="utf-8"))
    return json.loads(arg)


def make_llama(model_path: str, n_ctx: int, kv_f32: bool, threads: int | None):
    import llama_cpp

    kwargs = dict(
        model_path=model_path,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_gpu_layers=0,
        logits_all=False,
        verbose=False,
        seed=0,
    )
    if threads:
        kwargs["n_threads"] = threads
        kwargs["n_threads_batch"] = threads
    if kv_f32:
        kwargs["type_k"] = llama_cpp.GGML_TYPE_F32
        kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
    return llama_cpp.Llama(**kwargs)


def last_logits(llm, ids: list[int]) -> np.ndarray:
    import llama_cpp

    llm.reset()  # n_tokens = 0; eval() then drops the whole KV cache before decoding
    llm.eval(ids)  # the last token of the (last) batch always requests logits
    # Read llama.cpp's logits directly: newer llama-cpp-python only fills llm.scores with logits_all.
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32).copy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="path to a .gguf file")
    ap.add_argument("ids", help="JSON list of token ids, a file holding one, or a reference.json")
    ap.add_argument("--n-ctx", type=int, default=0, help="context size (default: enough for the ids)")
    ap.add_argument("--kv-f16", action="store_true", help="use llama.cpp's default f16 KV cache")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tol", type=float, default=1e-2, help="max abs diff tolerated (reference mode)")
    args = ap.parse_args()

    spec = load_ids_arg(args.ids)
    if isinstance(spec, dict) and "cases" in spec:
        seqs = [c["input_ids"] for c in spec["cases"]]
    elif isinstance(spec, list) and all(isinstance(x, int) for x in spec):
        seqs = [spec]
    else:
        print("ids must be a JSON list of ints or a reference.json", file=sys.stderr)
        return 2
    if any(len(s) == 0 for s in seqs):
        print("empty id list", file=sys.stderr)
        return 2

    n_ctx = args.n_ctx or max(32, max(len(s) for s in seqs))
    llm = make_llama(args.model, n_ctx, not args.kv_f16, args.threads)

    if not (isinstance(spec, dict) and "cases" in spec):
        logits = last_logits(llm, seqs[0])
        out = {"n_vocab": int(logits.shape[0]), "input_ids": seqs[0], "logits": [float(x) for x in logits]}
        print(json.dumps(out))
        return 0

    worst = 0.0
    results = []
    for case in spec["cases"]:
        got = last_logits(llm, case["input_ids"])
        ref = np.array(case["last_logits"], dtype=np.float32)
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        results.append(
            {
                "name": case.get("name"),
                "input_ids": case["input_ids"],
                "max_abs_diff": diff,
                "argmax_match": int(np.argmax(got)) == int(np.argmax(ref)),
                "top5_llamacpp": [int(i) for i in np.argsort(-got, kind="stable")[:5]],
                "top5_reference": [int(i) for i in np.argsort(-ref, kind="stable")[:5]],
                "logits": [float(x) for x in got],
            }
        )
    print(json.dumps({"model": args.model, "max_abs_diff": worst, "tol": args.tol, "cases": results}))
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
