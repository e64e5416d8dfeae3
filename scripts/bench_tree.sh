#!/usr/bin/env bash
# The tree at 200 rounds in headless Chromium (tests/e2e/bench_tree.mjs): `storywriter auto`
# writes one story of TREE_ROUNDS (default 200) steps with the tiny demo model (three
# candidates a step, a random pick), the page imports and opens it, and the time from a key
# press in the tree to the next frame is measured per key. Makes the model and the story in
# WORK_DIR and reuses them.
#
# Usage: ./scripts/bench_tree.sh [WORK_DIR]   (default target/bench-tree)
# Environment: BENCH_DIST=DIR (benchmark an already built app).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

WORK="${1:-target/bench-tree}"
ROUNDS="${TREE_ROUNDS:-200}"
mkdir -p "$WORK/models"
prepare_browser_run "${BENCH_DIST:-}" dev
trap stop_serves EXIT

model="$WORK/models/demo-tiny-q8_0.gguf"
[[ -f "$model" ]] || make_random_model "$CLI" tiny "$model"
write_model_index "$WORK/models" >/dev/null
# `auto` resumes a log it finds, so a run cut short goes on where it stopped.
story="$WORK/story-$ROUNDS.jsonl"
"$CLI" auto --model "$model" --prompt "The lighthouse keeper" --steps "$ROUNDS" --stories 1 \
    --chooser random --log "$story"
start_serve "$CLI" "$DIST" "$WORK/models" "$WORK/serve.log"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(/usr/bin/chromium --version); load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
TREE_URL="$SERVE_URL" TREE_LOG="$story" node tests/e2e/bench_tree.mjs
