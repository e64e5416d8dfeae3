#!/usr/bin/env python3
"""Generate the committed reference fixtures under tests/fixtures/.

Everything is made locally with fixed seeds (nothing is downloaded):

  * a tiny byte-level BPE tokenizer with bloom-560m's exact tokenizer.json pipeline,
    trained on the small multilingual corpus embedded below;
  * three tiny random-weight BLOOM checkpoints (tiny-pow2, tiny-odd, tiny-sharded),
    saved with transformers' save_pretrained;
  * reference.json per model: last-position logits (float32) and greedy continuations
    computed by Hugging Face transformers;
  * tokenizer_cases.json: ids/decodes of tricky strings;
  * two GGUF files laid out as llama.cpp's convert_hf_to_gguf.py (class BloomModel) would
    write them, produced with gguf-py (llama.cpp's own writer).

Usage (from the repository root):

    pip install -r scripts/requirements-fixtures.txt
    python scripts/make_fixtures.py            # writes tests/fixtures/
    python scripts/make_fixtures.py --out DIR  # writes elsewhere

Running it twice gives byte-identical files (checked with sha256sum).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

# Determinism: single-threaded CPU kernels, no GPU.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
import gguf  # noqa: E402
import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parent.parent

VOCAB_SIZE = 1000
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0, 1, 2, 3

# ---------------------------------------------------------------------------------------
# Training corpus: English prose, French, Chinese (with …。，、), code, HTML, emoji, digits,
# and whitespace runs, so that merges exist for all of them.
# ---------------------------------------------------------------------------------------
CORPUS = r"""
Once upon a time, in a small village at the edge of the forest, there lived an old
storyteller. Every evening the children gathered around the fire to hear her stories.
She told them about dragons and kings, about brave girls who sailed across the sea, and
about a little robot who wanted to learn how to write poems. "Stories are like seeds,"
she would say. "You plant them in the dark, and one day they grow into something new."
The children laughed, and the fire crackled, and the night was long and warm.

The quick brown fox jumps over the lazy dog. The lazy dog does not care at all.
It was the best of times, it was the worst of times; it was the age of wisdom, it was
the age of foolishness. What is a model? A model is a function that maps the past to a
guess about the future. When the weather is cold, we stay inside and read books.
Why? Because reading is fun! Really?! Yes... really. Well, mostly.
The language model predicts the next token, then the next one, and then another one.
  Two spaces here.   Three spaces there.    Four spaces, then a tab:	and	more	tabs.
Line one
Line two

Line four after an empty line.
	Indented with a tab.
        Indented with eight spaces.

Il était une fois une petite fille qui habitait au bord de la mer. Elle aimait écouter
les histoires de sa grand-mère. « Où vas-tu ? » demanda le garçon. « À l'école, bien sûr ! »
Les élèves étudient le français, l'anglais et les mathématiques. C'est très intéressant.
Déjà l'été : les fenêtres sont ouvertes, et on entend les oiseaux chanter. Ça va très bien.

从前有一座山，山里有一座庙，庙里有一个老和尚在给小和尚讲故事。
今天天气很好，我们去公园散步吧。你好，世界！我想在苹果工作……
东京是日本的首都。北京、上海、广州和深圳都是中国的大城市。
他说：“语言模型可以写故事、诗歌和代码。”我们都很高兴。
机器学习是人工智能的一个分支，它让计算机从数据中学习。

def greet(name: str) -> str:
    # Return a friendly greeting.
    return f"Hello, {name}!"

for i in range(10):
    print(i, i * i, greet("world"))

fn main() {
    let xs: Vec<u32> = (0..10).map(|x| x * 2).collect();
    println!("{:?}", xs);
    if xs.len() > 3 && xs[0] == 0 { return; }
}

#include <stdio.h>
int main(void) { printf("%d\n", 42); return 0; }

<!DOCTYPE html>
<html>
<head><title>My Page</title></head>
<body>
  <h1 class="title">Hello &amp; welcome</h1>
  <p>This is <b>bold</b>, <i>italic</i> and <a href="https://example.com/">a link</a>.</p>
  <script>alert("hi"); var x = 1 < 2 && 3 > 2;</script>
  <div id="main" style="color: red;">&lt;tag&gt; &quot;quoted&quot; &nbsp;</div>
</body>
</html>

Emoji: 😀 😃 😄 🍕 🚀 ✅ ❤️ 👍 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🦙🦙 (and more!)
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 1,000,000 12:30 50% $19.99 #7 v1.2.3
Accents: café naïve résumé façade jalapeño Zürich São Paulo Ærøskøbing Ελληνικά Русский
Punctuation: hello, world. hello! world? (parens) [brackets] {braces} "quotes" 'single' -- dash — em … ellipsis | pipe
The end. Thank you for reading this story. Good night, and sweet dreams.
"""

# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------

# These blocks are bloom-560m's tokenizer.json pipeline, verbatim.
BLOOM_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {
            "type": "Split",
            "pattern": {"Regex": " ?[^(\\s|[.,!?…。，、।۔،])]+"},
            "behavior": "Isolated",
            "invert": False,
        },
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}
BLOOM_POST_PROCESSOR = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}
BLOOM_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}

# tokenizer_config.json / special_tokens_map.json as BloomTokenizerFast.save_pretrained
# (transformers 4.x) writes them for bigscience/bloom-560m.
TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "model_max_length": 1000000000000000019884624838656,
    "pad_token": "<pad>",
    "padding_side": "left",
    "tokenizer_class": "BloomTokenizerFast",
    "unk_token": "<unk>",
}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    # The trainer needs the real pre-tokenizer so merges never cross split boundaries.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                pattern=tokenizers.Regex(" ?[^(\\s|[.,!?…。，、।۔،])]+"), behavior="isolated", invert=False
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=0,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 byte symbols
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)

    # Rewrite the pipeline blocks to bloom-560m's exact JSON (the Python constructors do not
    # expose every flag, e.g. use_regex on the ByteLevel decoder), then reload.
    data = json.loads(tok.to_str())
    data["normalizer"] = None
    data["pre_tokenizer"] = BLOOM_PRE_TOKENIZER
    data["post_processor"] = BLOOM_POST_PROCESSOR
    data["decoder"] = BLOOM_DECODER
    data["truncation"] = None
    data["padding"] = None
    m = data["model"]
    m["dropout"] = None
    m["unk_token"] = None
    m["continuing_subword_prefix"] = None
    m["end_of_word_suffix"] = None
    m["fuse_unk"] = False
    m["byte_fallback"] = False
    for at in data["added_tokens"]:
        assert at["special"] and not at["normalized"], at
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))

    vocab = tok.get_vocab(with_added_tokens=True)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert vocab[s] == i, (s, vocab[s])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    assert len(alphabet) == 256 and all(ch in vocab for ch in alphabet), "byte alphabet missing from vocab"
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def write_tokenizer_files(tok: Tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"), pretty=True)
    write_json(out_dir / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(out_dir / "special_tokens_map.json", SPECIAL_TOKENS_MAP)


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def large_init_(model: torch.nn.Module, seed: int) -> None:
    """Larger-than-default random init so logits are well separated and bugs show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # registration order: deterministic
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            is_norm = "layernorm" in name or ".ln_f." in name or name.startswith("ln_f.")
            if is_norm and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):  # layer-norm and linear biases
                p.copy_(0.1 * noise)
            else:  # embedding and linear weights
                p.copy_(0.2 * noise)


# Seeds were picked (among 0..39) so that every greedy continuation below has >= 7 distinct
# tokens and the top-1/top-2 logit gap along each greedy path stays >= 0.01 (random tiny
# models otherwise tend to lock onto one repeated token).
MODELS = {
    # name: (config kwargs, on-disk dtype, seed)
    "tiny-pow2": (dict(hidden_size=256, n_head=4, n_layer=2), torch.float32, 38),
    "tiny-odd": (
        dict(hidden_size=96, n_head=6, n_layer=3, apply_residual_connection_post_layernorm=True),
        torch.float16,
        6,
    ),
    "tiny-sharded": (dict(hidden_size=160, n_head=5, n_layer=2), torch.bfloat16, 18),
}


def make_config(kw: dict) -> BloomConfig:
    return BloomConfig(
        vocab_size=VOCAB_SIZE,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        unk_token_id=0,
        tie_word_embeddings=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        pretraining_tp=1,
        slow_but_exact=False,
        use_cache=True,
        architectures=["BloomForCausalLM"],
        **kw,
    )


def save_model(name: str, out_dir: Path) -> None:
    kw, dtype, seed = MODELS[name]
    torch.manual_seed(seed)
    model = BloomForCausalLM(make_config(kw)).eval()
    large_init_(model, seed)
    model = model.to(dtype)

    if name == "tiny-pow2":
        # Modern spelling, tensor names with the `transformer.` prefix.
        model.save_pretrained(out_dir, safe_serialization=True)
    elif name == "tiny-odd":
        # Bare BloomModel: tensor names without `transformer.` (like the original
        # bigscience/bloom-* checkpoints), no lm_head; config with the OLD spellings.
        model.transformer.save_pretrained(out_dir, safe_serialization=True)
        cfg_path = out_dir / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["n_embed"] = cfg.pop("hidden_size")
        cfg["num_attention_heads"] = cfg.pop("n_head")
        cfg["architectures"] = ["BloomForCausalLM"]
        write_json(cfg_path, dict(sorted(cfg.items())))
    elif name == "tiny-sharded":
        model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="600KB")
    else:
        raise ValueError(name)


def load_f32(model_dir: Path, **overrides) -> BloomForCausalLM:
    model = BloomForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **overrides).eval()
    for k, v in overrides.items():
        assert getattr(model.config, k) == v
    # Tied lm_head must equal the (upcast) embedding.
    assert torch.equal(model.lm_head.weight, model.transformer.word_embeddings.weight)
    return model


# ---------------------------------------------------------------------------------------
# Reference outputs
# ---------------------------------------------------------------------------------------

PROMPTS = [
    ("whitespace", "The quick brown fox\tjumps  over\n\nthe lazy dog.\n  Then it slept."),
    ("cjk", "东京是日本的首都。你好，世界、再见…"),
    ("emoji", "I love pizza 🍕 and coding 👩‍💻! 🚀"),
    ("html", "<b>bold</b> &amp; <script>alert(1)</script>"),
    ("prose", "Once upon a time, there was a little robot who"),
]
N_NEW = 24


def reference_for(model_dir: Path, hf_tok, name: str, tok_json: Tokenizer, **overrides) -> dict:
    model = load_f32(model_dir, **overrides)
    cases = []
    min_gap = float("inf")
    for case_name, text in PROMPTS:
        ids = hf_tok.encode(text, add_special_tokens=False)
        assert ids == tok_json.encode(text, add_special_tokens=False).ids
        input_ids = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
        last = logits[0, -1].to(torch.float32)
        assert last.shape[0] == VOCAB_SIZE
        top5 = torch.topk(last, 5).indices.tolist()
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=False,
                num_beams=1,
                max_new_tokens=N_NEW,
                min_new_tokens=N_NEW,
                pad_token_id=3,
                eos_token_id=2,
                use_cache=True,
                output_scores=True,
                return_dict_in_generate=True,
            )
        for sc in out.scores:  # processed scores (EOS set to -inf by min_new_tokens)
            top2 = torch.topk(sc[0].float(), 2).values
            min_gap = min(min_gap, float(top2[0] - top2[1]))
        out = out.sequences
        new_ids = out[0, len(ids):].tolist()
        assert len(new_ids) == N_NEW
        assert new_ids[0] == int(torch.argmax(last)), "greedy first token != argmax of last logits"
        cases.append(
            {
                "name": case_name,
                "prompt": text,
                "input_ids": ids,
                "last_logits": [float(x) for x in last.numpy()],
                "top5_ids": top5,
                "greedy_new_ids": new_ids,
                "greedy_new_text": tok_json.decode(new_ids, skip_special_tokens=False),
            }
        )
    kw, dtype, _ = MODELS[name]
    return {
        "comment": (
            f"Reference outputs from Hugging Face transformers {transformers.__version__} "
            f"(torch {torch.__version__}). Weights are stored on disk as {str(dtype).removeprefix('torch.')}; "
            "the model was loaded with BloomForCausalLM.from_pretrained(dir, dtype=torch.float32), i.e. upcast "
            "to float32, and all outputs were computed in float32 on CPU. last_logits = logits at the last "
            "prompt position for every vocab entry (float32 values written as Python float repr, exact). "
            "greedy_new_ids = model.generate(do_sample=False, num_beams=1, max_new_tokens=24, "
            "min_new_tokens=24, use_cache=True): min_new_tokens makes HF suppress EOS (id 2) for all 24 "
            "steps, so it never stops early. No BOS/EOS is added to the prompt ids."
        ),
        "model": name,
        "storage_dtype": str(dtype).removeprefix("torch."),
        "compute_dtype": "float32",
        "config": {**kw, **overrides},
        "vocab_size": VOCAB_SIZE,
        "generation": {
            "do_sample": False,
            "num_beams": 1,
            "max_new_tokens": N_NEW,
            "min_new_tokens": N_NEW,
            "eos_suppressed_by_min_new_tokens": True,
            "eos_token_id": 2,
        },
        "min_top2_gap_along_greedy_paths": min_gap,
        "versions": versions(),
        "cases": cases,
    }


TOKENIZER_TEXTS = [
    "Hello world",
    "Hello  world",  # double space
    "   leading and trailing spaces   ",
    "tab\tseparated\t\tvalues",
    "line one\nline two\n\n\nline five\r\nwindows",
    "东京是日本的首都。你好，世界、再见…",
    "Wait… what?! Really... yes.",
    "emoji 😀🍕🚀 and ZWJ 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "<b>bold</b> &amp; <script>alert(\"x\")</script> <a href='/'>link</a>",
    "café naïve résumé Zürich São Paulo Ærøskøbing",
    "Il était une fois « Où vas-tu ? »",
    "digits 0 12 345 6789 3.14159 1,000,000 $19.99 v1.2.3",
    "fn main() { println!(\"{:?}\", (0..10).collect::<Vec<_>>()); } // a|b (c)",
    "",
    " ",
    "\n",
    "Ελληνικά и Русский текст, हिन्दी। اردو۔ عربي،",
    "<s> </s> <pad> <unk> literal special strings",
]


def tokenizer_cases(tok_json: Tokenizer, hf_tok) -> dict:
    cases = []
    for text in TOKENIZER_TEXTS:
        enc = tok_json.encode(text, add_special_tokens=False)
        hf_ids = hf_tok.encode(text, add_special_tokens=False)
        assert enc.ids == hf_ids, (text, enc.ids, hf_ids)
        decoded = tok_json.decode(enc.ids, skip_special_tokens=False)
        cases.append(
            {
                "text": text,
                "ids": enc.ids,
                "tokens": enc.tokens,
                "decoded": decoded,
                "roundtrip": decoded == text,
            }
        )
    return {
        "comment": (
            "Ids from the HF tokenizer in tests/fixtures/tiny-pow2/tokenizer.json (identical in every model "
            "dir), encode(text, add_special_tokens=False); checked equal between tokenizers.Tokenizer and "
            "transformers.AutoTokenizer. decoded = tokenizers.Tokenizer.decode(ids, skip_special_tokens=False) "
            "(no clean_up_tokenization_spaces). tokens = byte-level (GPT-2 unicode-mapped) token strings. "
            "Note: special-token strings such as '<s>' in the text ARE matched as added tokens by HF."
        ),
        "vocab_size": VOCAB_SIZE,
        "special_ids": {"unk": 0, "bos": 1, "eos": 2, "pad": 3},
        "versions": versions(),
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------
# GGUF, replicating llama.cpp convert_hf_to_gguf.py `class BloomModel` (see README).
# ---------------------------------------------------------------------------------------


def read_hf_tensors(model_dir: Path):
    """Yield (name, torch tensor) in the order the converter reads them: part files sorted
    by name, tensors in each file's key order."""
    parts = sorted(p for p in os.listdir(model_dir) if p.startswith("model") and p.endswith(".safetensors"))
    for part in parts:
        with safe_open(str(model_dir / part), framework="pt", device="cpu") as f:
            for k in f.keys():
                yield k, f.get_tensor(k)


def bloom_qkv_to_contiguous(t: torch.Tensor, n_head: int, n_embed: int) -> torch.Tensor:
    """HF/Megatron per-head interleave (n_head, 3, head_dim[, n_embed]) -> Q | K | V."""
    head_dim = n_embed // n_head
    if t.ndim == 2:
        w = t.reshape(n_head, 3, head_dim, n_embed)
        return torch.cat([w[:, j].reshape(-1, n_embed) for j in range(3)], dim=0)
    b = t.reshape(n_head, 3, head_dim)
    return torch.cat([b[:, j].reshape(n_embed) for j in range(3)], dim=0)


def write_gguf(model_dir: Path, out_path: Path, ftype: gguf.LlamaFileType, legacy_output_copy: bool) -> None:
    hparams = json.loads((model_dir / "config.json").read_text())
    n_embed = hparams.get("hidden_size", hparams.get("n_embed"))
    n_head = hparams.get("n_head", hparams.get("num_attention_heads"))
    n_layer = hparams["n_layer"]
    arch = gguf.MODEL_ARCH.BLOOM
    tmap = gguf.get_tensor_name_map(arch, n_layer)

    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])

    # --- tensors (prepare_tensors + BloomModel.modify_tensors) ---
    names = [n for n, _ in read_hf_tensors(model_dir)]
    for name, data in read_hf_tensors(model_dir):
        if data.dtype not in (torch.float16, torch.float32):
            data = data.to(torch.float32)  # bf16 and others go through f32
        hf_name = re.sub(r"transformer\.", "", name)
        if re.match(r"h\.\d+\.self_attention\.query_key_value\.(weight|bias)", hf_name):
            data = bloom_qkv_to_contiguous(data, n_head, n_embed)
        new_name = tmap.get_name(key=hf_name, try_suffixes=(".weight", ".bias"))
        assert new_name is not None, hf_name
        outputs = [(new_name, data)]
        if legacy_output_copy and hf_name == "word_embeddings.weight":
            if all(s not in names for s in ("lm_head.weight", "output.weight")):
                outputs.append(("output.weight", data))
        for out_name, t in outputs:
            arr = t.numpy()
            n_dims = arr.ndim
            if n_dims <= 1 or out_name.endswith("_norm.weight") or not out_name.endswith(".weight"):
                qtype = gguf.GGMLQuantizationType.F32
            elif ftype == gguf.LlamaFileType.ALL_F32:
                qtype = gguf.GGMLQuantizationType.F32
            elif ftype == gguf.LlamaFileType.MOSTLY_F16:
                qtype = gguf.GGMLQuantizationType.F16
            else:
                raise ValueError(ftype)
            arr = gguf.quants.quantize(arr, qtype)
            writer.add_tensor(out_name, arr, raw_dtype=qtype)

    # --- metadata (prepare_metadata) ---
    total_params, shared_params, expert_params, expert_count = writer.get_total_parameter_count()
    meta = gguf.Metadata.load(None, model_dir, None, total_params)
    if meta.name is None:
        meta.name = model_dir.name
    if meta.size_label is None and total_params > 0:
        meta.size_label = gguf.size_label(total_params, shared_params, expert_params, expert_count)
    writer.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(writer)

    # BloomModel.set_gguf_parameters
    writer.add_context_length(hparams.get("seq_length", n_embed))
    writer.add_embedding_length(n_embed)
    writer.add_feed_forward_length(4 * n_embed)
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_eps(hparams["layer_norm_epsilon"])
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # set_vocab -> _set_vocab_gpt2 -> get_vocab_base
    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    vocab_size = hparams.get("vocab_size", len(hf_tok.vocab))
    assert max(hf_tok.vocab.values()) < vocab_size
    reverse_vocab = {i: t for t, i in hf_tok.vocab.items()}
    added_vocab = hf_tok.get_added_vocab()
    tokens: list[str] = []
    toktypes: list[int] = []
    for i in range(vocab_size):
        if i not in reverse_vocab:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
            continue
        t = reverse_vocab[i]
        if t in added_vocab:
            assert hf_tok.added_tokens_decoder[i].special
            toktypes.append(gguf.TokenType.CONTROL)
        else:
            toktypes.append(gguf.TokenType.NORMAL)
        tokens.append(t)
    writer.add_tokenizer_model("gpt2")
    # The converter derives this from a hash of the tokenization of a check string; for the
    # real bigscience/bloom tokenizer that yields "bloom". Our tiny tokenizer has the same
    # pre-tokenizer but a different vocab (so a different hash), hence set it directly.
    writer.add_tokenizer_pre("bloom")
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True)
    # gguf-py as vendored in current llama.cpp (newer than the PyPI release) sets these two
    # for a tokenizer.json whose post_processor is ByteLevel; do the same so the file matches
    # what today's convert_hf_to_gguf.py writes.
    if json.loads((model_dir / "tokenizer.json").read_text())["post_processor"]["type"] == "ByteLevel":
        special_vocab.add_special_token.setdefault("bos", False)
        special_vocab.add_special_token.setdefault("eos", False)
    special_vocab.add_to_gguf(writer, quiet=True)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=out_path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


# ---------------------------------------------------------------------------------------


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "gguf": _pkg_version("gguf"),
    }


def _pkg_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer()
    for name in MODELS:
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        save_model(name, d)
        write_tokenizer_files(tok, d)

    hf_tok = AutoTokenizer.from_pretrained(out / "tiny-pow2")
    assert hf_tok.encode("a", add_special_tokens=False) == tok.encode("a").ids
    write_json(out / "tokenizer_cases.json", tokenizer_cases(tok, hf_tok))

    for name in MODELS:
        ref = reference_for(out / name, hf_tok, name, tok)
        write_json(out / name / "reference.json", ref)

    # llama.cpp's BLOOM graph has no apply_residual_connection_post_layernorm (it always adds the
    # pre-norm residual) and GGUF has no key for it, so the tiny-odd GGUF denotes a *different*
    # function than tiny-odd/ in transformers. Its reference is computed by transformers on the
    # same weights with that flag forced to False.
    ref = reference_for(out / "tiny-odd", hf_tok, "tiny-odd", tok, apply_residual_connection_post_layernorm=False)
    ref["model"] = "tiny-odd-llamacpp-f16.gguf"
    ref["comment"] = (
        "Reference for tiny-odd-llamacpp-f16.gguf as llama.cpp interprets it: same f16 weights as tiny-odd/, "
        "but apply_residual_connection_post_layernorm=False, because llama.cpp's BLOOM graph always uses the "
        "pre-layernorm residual and GGUF cannot express the flag. Computed by transformers with "
        "from_pretrained(tiny-odd, dtype=float32, apply_residual_connection_post_layernorm=False). "
        + ref["comment"]
    )
    write_json(out / "tiny-odd-llamacpp-f16.reference.json", ref)

    # tiny-pow2: current upstream converter (no `output.weight`; llama.cpp ties it at load).
    write_gguf(out / "tiny-pow2", out / "tiny-pow2-llamacpp-f32.gguf", gguf.LlamaFileType.ALL_F32,
               legacy_output_copy=False)
    # tiny-odd: older converter releases, which also wrote `output.weight` = copy of token_embd.
    write_gguf(out / "tiny-odd", out / "tiny-odd-llamacpp-f16.gguf", gguf.LlamaFileType.MOSTLY_F16,
               legacy_output_copy=True)
    print("fixtures written to", out)


if __name__ == "__main__":
    main()
