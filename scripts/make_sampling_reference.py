#!/usr/bin/env python3
"""Reference scores for `src/engine/sampling/`, from transformers' own `generate()`.

A tiny random BLOOM (vocabulary 50) whose forward pass is patched to return chosen logits runs
`generate(max_new_tokens=1, output_scores=True, output_logits=True, return_dict_in_generate=True)`
with each parameter set, so the processors and warpers are exactly the ones `generate` builds
(`_get_logits_processor`, in its order and with its activation conditions). The processed scores
of that step are written to `tests/fixtures/sampling_reference.json`, `-inf` as `null`.

Usage: python3 scripts/make_sampling_reference.py [output.json]
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import BloomConfig, BloomForCausalLM

VOCAB = 50

# (name, params). Fields as in `SamplingParams`; missing ones take its defaults
# (temperature 1, top_k 50, top_p 1, min_p 0 = unset, typical_p 1, repetition_penalty 1).
PARAM_SETS = [
    ("defaults", {}),
    ("temperature_0.7", {"temperature": 0.7, "top_k": 0}),
    ("temperature_1.5", {"temperature": 1.5, "top_k": 0}),
    ("top_k_1", {"top_k": 1}),
    ("top_k_5", {"top_k": 5}),
    ("top_k_10_temp_0.7", {"top_k": 10, "temperature": 0.7}),
    ("top_p_0.9", {"top_k": 0, "top_p": 0.9}),
    ("top_p_0.5", {"top_k": 0, "top_p": 0.5}),
    ("top_p_0.95_top_k_50", {"top_p": 0.95}),
    ("top_p_0.1", {"top_k": 0, "top_p": 0.1}),
    ("min_p_0.05", {"top_k": 0, "min_p": 0.05}),
    ("min_p_0.2", {"top_k": 0, "min_p": 0.2}),
    ("min_p_0.1_temp_1.3", {"top_k": 0, "min_p": 0.1, "temperature": 1.3}),
    ("typical_0.9", {"top_k": 0, "typical_p": 0.9}),
    ("typical_0.5", {"top_k": 0, "typical_p": 0.5}),
    ("typical_0.2_top_k_20", {"top_k": 20, "typical_p": 0.2}),
    ("repetition_1.3", {"repetition_penalty": 1.3}),
    ("repetition_0.8_top_k_0", {"repetition_penalty": 0.8, "top_k": 0}),
    (
        "all",
        {
            "temperature": 0.8,
            "top_k": 40,
            "top_p": 0.9,
            "min_p": 0.05,
            "typical_p": 0.95,
            "repetition_penalty": 1.2,
        },
    ),
    ("temp_1.3_top_p_0.8_typical_0.7", {"temperature": 1.3, "top_k": 0, "top_p": 0.8, "typical_p": 0.7}),
    ("greedy_repetition_1.5", {"greedy": True, "repetition_penalty": 1.5, "temperature": 0.5, "top_p": 0.5}),
    ("greedy_plain", {"greedy": True}),
]

# Parameter sets whose result does not depend on how tied scores are sorted: used with the
# logit vector full of ties (top-p and typical-p sort, and torch.sort is not stable).
TIE_SAFE = {
    "defaults",
    "temperature_0.7",
    "top_k_1",
    "top_k_5",
    "top_k_10_temp_0.7",
    "min_p_0.05",
    "min_p_0.2",
    "repetition_1.3",
    "greedy_repetition_1.5",
    "greedy_plain",
}


def logit_vectors():
    rng = np.random.RandomState(0)
    out = [
        ("randn_x1", rng.randn(VOCAB) * 1.0),
        ("randn_x3", rng.randn(VOCAB) * 3.0),
        ("randn_x6", rng.randn(VOCAB) * 6.0),
        ("randn_x2_shifted", rng.randn(VOCAB) * 2.0 - 5.0),
        ("ties_halves", np.round(rng.randn(VOCAB) * 4.0) / 2.0),
    ]
    return [(name, v.astype(np.float32)) for name, v in out]


class FixedLogitsBloom(BloomForCausalLM):
    """BLOOM whose last-position logits are replaced by `self.fixed`."""

    fixed = None

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        logits = out.logits.clone()
        logits[:, -1, :] = self.fixed.to(logits.dtype)
        out.logits = logits
        return out


def generate_kwargs(params):
    greedy = params.get("greedy", False)
    kwargs = {
        "do_sample": not greedy,
        "temperature": params.get("temperature", 1.0),
        "top_k": params.get("top_k", 50),
        "top_p": params.get("top_p", 1.0),
        "typical_p": params.get("typical_p", 1.0),
        "repetition_penalty": params.get("repetition_penalty", 1.0),
    }
    min_p = params.get("min_p", 0.0)
    if min_p > 0.0:
        kwargs["min_p"] = min_p
    return kwargs


def main():
    out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sampling_reference.json"
    )
    torch.manual_seed(0)
    config = BloomConfig(vocab_size=VOCAB, hidden_size=16, n_layer=1, n_head=2)
    model = FixedLogitsBloom(config).eval()
    transformers.logging.set_verbosity_error()

    ctx_rng = np.random.RandomState(1)
    cases = []
    for vec_name, logits in logit_vectors():
        # A context with repeated ids (prompt + generated so far).
        context = ctx_rng.randint(0, VOCAB, size=12).tolist()
        context += context[:3]
        model.fixed = torch.from_numpy(logits)
        for set_name, params in PARAM_SETS:
            if vec_name.startswith("ties") and set_name not in TIE_SAFE:
                continue
            input_ids = torch.tensor([context])
            with torch.no_grad():
                result = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=1,
                    output_scores=True,
                    output_logits=True,
                    return_dict_in_generate=True,
                    pad_token_id=config.pad_token_id,
                    **generate_kwargs(params),
                )
            raw = result.logits[0][0]
            assert torch.equal(raw, model.fixed), "generate did not see the fixed logits"
            scores = result.scores[0][0].tolist()
            cases.append(
                {
                    "name": f"{vec_name}/{set_name}",
                    "params": params,
                    "logits": [float(x) for x in logits],
                    "context_ids": context,
                    "processed": [None if math.isinf(s) and s < 0 else s for s in scores],
                }
            )
            assert not any(math.isnan(s) or s == math.inf for s in scores)

    head = {
        "about": "Processed scores of one generate() step; -inf as null. Made by scripts/make_sampling_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    # One case per line: readable diffs, small file.
    lines = [json.dumps(head)[:-1] + ', "cases": [']
    lines += [json.dumps(case) + ("," if i + 1 < len(cases) else "") for i, case in enumerate(cases)]
    lines.append("]}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n")
    print(f"{len(cases)} cases -> {out_path}")


if __name__ == "__main__":
    main()
