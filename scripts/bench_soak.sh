#!/usr/bin/env bash
# A long writing session in headless Chromium, memory read every 10 rounds (JS heap after a
# forced collection, the worker's wasm memory, IndexedDB use, DOM nodes): SOAK_DEMO_ROUNDS
# (default 300) rounds with the tiny demo model, then SOAK_560M_ROUNDS (default 30) with a
# bloom-560m-shaped q4_0 model and one round on a story of ~2,000 tokens
# (tests/e2e/bench_soak.mjs). Builds the app (trunk, release) and the CLI; makes the models in
# WORK_DIR and reuses them (the 560m one needs ~3.5 GB free there while it is made).
#
# Usage: ./scripts/bench_soak.sh [WORK_DIR]   (default target/bench-soak)
# Environment: BENCH_DIST=DIR (benchmark an already built app), SOAK_560M_ROUNDS=0 skips the
# 560m model; after the demo model's rounds the autopilot writes two stories of
# SOAK_PICKER_STEPS (default 100; 0 skips) and the page trains its picker on all of them, timed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

WORK="${1:-target/bench-soak}"
mkdir -p "$WORK/demo" "$WORK/560m"

# A release CLI for making the 560m model (a dev build quantizes it far slower); dev is
# enough without it.
profile=release
if [[ "${SOAK_560M_ROUNDS:-30}" == 0 ]]; then profile=dev; fi
prepare_browser_run "${BENCH_DIST:-}" "$profile"
trap stop_serves EXIT

TARGETS=
demo="$WORK/demo/demo-tiny-q8_0.gguf"
[[ -f "$demo" ]] || make_random_model "$CLI" tiny "$demo"
write_model_index "$WORK/demo" >/dev/null
start_serve "$CLI" "$DIST" "$WORK/demo" "$WORK/serve-demo.log"
picker=
if [[ "${SOAK_PICKER_STEPS:-100}" != 0 ]]; then picker=",\"pickerStories\":[2,${SOAK_PICKER_STEPS:-100}]"; fi
TARGETS="{\"label\":\"demo (tiny q8_0)\",\"url\":\"$SERVE_URL\",\"rounds\":${SOAK_DEMO_ROUNDS:-300}$picker}"

if [[ "${SOAK_560M_ROUNDS:-30}" != 0 ]]; then
    big="$WORK/560m/random-560m-q4_0.gguf"
    [[ -f "$big" ]] || TMPDIR="$WORK" make_random_model "$CLI" bloom-560m "$big" q4_0
    write_model_index "$WORK/560m" >/dev/null
    start_serve "$CLI" "$DIST" "$WORK/560m" "$WORK/serve-560m.log"
    TARGETS+=",{\"label\":\"bloom-560m shape q4_0\",\"url\":\"$SERVE_URL\",\"rounds\":${SOAK_560M_ROUNDS:-30},\"longStory\":true,\"modelBytes\":$(stat -c %s "$big")}"
fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(/usr/bin/chromium --version); load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
SOAK_TARGETS="[$TARGETS]" SOAK_OUT="$WORK/result.json" node tests/e2e/bench_soak.mjs
