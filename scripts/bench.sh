#!/usr/bin/env bash
# Native speed on a bloom-560m-shaped model with random weights: prefill and decode tok/s at
# q4_0 and q8_0, 1 and 2 threads, 1 and 3 candidates. Prints the Markdown rows of BENCHMARKS.md.
# Usage: ./scripts/bench.sh [WORK_DIR]   (needs ~4 GB of disk in WORK_DIR, default target/bench)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-target/bench}"
mkdir -p "$work"
cargo build --release --quiet
sw=target/release/storywriter
if [[ ! -f "$work/random-560m/model.safetensors" ]]; then
    "$sw" init-random --config bloom-560m --seed 0 --output "$work/random-560m"
fi
for dtype in q4_0 q8_0; do
    [[ -f "$work/random-560m-$dtype.gguf" ]] ||
        "$sw" quantize --input "$work/random-560m" --dtype "$dtype" --output "$work/random-560m-$dtype.gguf"
done
echo "| dtype | threads | candidates | prefill tok/s (128) | decode tok/s (64 × candidates) | load s | peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
for dtype in q4_0 q8_0; do
    for threads in 1 2; do
        for candidates in 1 3; do
            "$sw" bench --model "$work/random-560m-$dtype.gguf" --prompt-tokens 128 --new-tokens 64 \
                --candidates "$candidates" --threads "$threads" --json |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print("| %s | %d | %d | %.0f | %.1f | %.2f | %.0f |" % (r["model"]["quantization"], r["threads"], r["candidates"], r["prefill_tok_s"], r["decode_tok_s"], r["load_s"], r["peak_rss_mb"]))'
        done
    done
done
