#!/usr/bin/env bash
# The web app's speed in headless Chromium on bloom-560m-shaped models with random weights (q8_0
# and q4_0): first load and load from the browser's cache, prefill and decode tok/s with 1 and 3
# candidates, the round time as the story grows (openings of ~50 to 1,500 tokens; three
# candidates after a pick), the worker's wasm memory, and the bundle size
# (tests/e2e/bench_web.mjs, node + playwright-core); then wllama on the same files in the same
# Chromium (tests/e2e/bench_wllama.mjs), and native `storywriter bench`. Builds the app (trunk, release, simd128) and the CLI, makes the models in
# WORK_DIR (kept and reused: ~1.1 GB), serves each with `storywriter serve`, prints Markdown
# tables and writes WORK_DIR/result.json.
#
# Usage: ./scripts/bench_web.sh [WORK_DIR]   (default target/bench-web; making the models needs
# ~3.5 GB free there for a while: the f32 checkpoint they are quantized from)
# Environment: DTYPES (default "q8_0 q4_0"), BENCH_REPEATS (measured rounds per candidate count,
# default 3), BENCH_NEW_TOKENS (default 32), BENCH_DIST=DIR (benchmark an already built app),
# BENCH_THREADS (default "1 2": single-sequence rounds at these thread counts, in the browser
# and with native `storywriter bench` on the same file), BASELINE_DIST=DIR (another build, e.g.
# main's, benchmarked in the same run as "DTYPE baseline"), BENCH_STORY_CHARS (default
# "68 680 2025": openings of that many characters, ~50, 500 and 1,500 tokens, for the rounds as
# the story grows; empty skips them), BENCH_STORY_TOKENS (default "50 500 1500": the same natively, in tokens),
# BENCH_PROFILE=1 (the time per engine span of each round, in the browser and natively),
# BENCH_PAIRS (default 8: at each thread count, that many single-sequence rounds in the page
# each followed by native `storywriter bench` on the same file: their ratio, paired; 0 skips).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

WORK="${1:-target/bench-web}"
mkdir -p "$WORK"

# Release CLI: quantizing a 560m model with a dev build takes far longer.
prepare_browser_run "${BENCH_DIST:-}" release

trap stop_serves EXIT

TARGETS=
for dtype in ${DTYPES:-q8_0 q4_0}; do
    # One directory per model, so that the page (which loads the first model of index.json)
    # loads this one.
    dir="$WORK/$dtype"
    model="$dir/random-560m-$dtype.gguf"
    mkdir -p "$dir"
    if [[ ! -f "$model" ]]; then
        echo "making $model (init-random --config bloom-560m, quantize --dtype $dtype)"
        TMPDIR="$WORK" make_random_model "$CLI" bloom-560m "$model" "$dtype"
    fi
    write_model_index "$dir" >/dev/null
    start_serve "$CLI" "$DIST" "$dir" "$WORK/serve-$dtype.log"
    echo "serving $DIST and $dir at $SERVE_URL"
    TARGETS+="${TARGETS:+,}{\"label\":\"$dtype\",\"url\":\"$SERVE_URL\",\"model\":\"$model\"}"
    if [[ -n "${BASELINE_DIST:-}" ]]; then
        start_serve "$CLI" "$BASELINE_DIST" "$dir" "$WORK/serve-$dtype-baseline.log"
        echo "serving $BASELINE_DIST and $dir at $SERVE_URL (baseline)"
        TARGETS+=",{\"label\":\"$dtype baseline\",\"url\":\"$SERVE_URL\",\"model\":\"$model\"}"
    fi
done

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
BENCH_TARGETS="[$TARGETS]" BENCH_DIST="$DIST" BENCH_OUT="$WORK/result.json" \
    BENCH_PROFILES="$WORK/profiles" BENCH_CLI="$CLI" node tests/e2e/bench_web.mjs
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The peer in the same browser: wllama (llama.cpp in wasm) on the same files, same thread
# counts, served cross-origin isolated by the same server.
WLLAMA_ROOT="$WORK/wllama-root"
mkdir -p "$WLLAMA_ROOT"
cp tests/e2e/wllama/index.html "$WLLAMA_ROOT/"
# Copied, not linked: the server serves no file that resolves outside its root.
rm -rf "$WLLAMA_ROOT/esm"
cp -r tests/e2e/node_modules/@wllama/wllama/esm "$WLLAMA_ROOT/esm"
for dtype in ${DTYPES:-q8_0 q4_0}; do
    start_serve "$CLI" "$WLLAMA_ROOT" "$WORK/$dtype" "$WORK/serve-wllama-$dtype.log"
    echo "wllama $dtype:"
    WLLAMA_URL="$SERVE_URL" WLLAMA_MODEL="${SERVE_URL}models/random-560m-$dtype.gguf" \
        WLLAMA_OUT="$WORK/wllama-$dtype.json" node tests/e2e/bench_wllama.mjs
done

# Native, same files, same prompt length and new tokens, single sequence, same thread counts;
# with BENCH_PROFILE, each run's time per span follows its line (on standard error).
# (Descriptor 3, not a path: reopening /dev/stderr would truncate a log it is redirected to.)
profile=()
exec 3>/dev/null
if [[ -n "${BENCH_PROFILE:-}" ]]; then
    profile=(--profile)
    exec 3>&2
fi
for dtype in ${DTYPES:-q8_0 q4_0}; do
    for threads in ${BENCH_THREADS:-1 2}; do
        echo "native $dtype, $threads thread(s): $("$CLI" bench --model "$WORK/$dtype/random-560m-$dtype.gguf" \
            --prompt-tokens 32 --new-tokens "${BENCH_NEW_TOKENS:-32}" --candidates 1 --threads "$threads" --json "${profile[@]}" 2>&3)"
    done
    stories="${BENCH_STORY_TOKENS-50 500 1500}"
    if [[ -n "$stories" ]]; then
        echo "native $dtype, rounds as the story grows: $("$CLI" bench --model "$WORK/$dtype/random-560m-$dtype.gguf" \
            --story-tokens "${stories// /,}" --rounds "${BENCH_REPEATS:-3}" --new-tokens "${BENCH_NEW_TOKENS:-32}" \
            --candidates 3 --json "${profile[@]}" 2>&3)"
    fi
done
