#!/usr/bin/env bash
# The web app's hub loader at the bloom-560m shape: the model worker's wasm memory (its peak:
# WebAssembly memory never shrinks) after quantizing a random bloom-560m checkpoint served by a
# local hub stand-in, and after loading the result again from the OPFS cache, at q8_0 and q4_0.
# Prints one JSON line per dtype (tests/e2e/hub_memory.mjs).
# Usage: ./scripts/bench_hub_memory.sh [WORK_DIR]   (needs ~2.5 GB of disk in WORK_DIR, default
# target/bench-hub; delete it afterwards). E2E_DIST=DIR measures an already built app;
# DTYPES=q8_0 measures one type.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
work="${1:-target/bench-hub}"
ensure_chromium
ensure_node
[[ -d tests/e2e/node_modules/playwright-core ]] || (cd tests/e2e && npm ci --no-audit --no-fund)
if [[ -n "${E2E_DIST:-}" ]]; then
    dist="$E2E_DIST"
else
    ensure_web_toolchain
    build_web_app
    dist=dist
fi
# The dev build, as the e2e tests use: it only makes the checkpoint and serves files here.
cli="$(build_cli dev)"
# The stand-in: {base}/{repo}/resolve/main/{file} under the served models directory.
repo_dir="$work/models/hub/bench/bloom-560m/resolve/main"
if [[ ! -f "$repo_dir/model.safetensors" ]]; then
    "$cli" init-random --config bloom-560m --seed 0 --output "$repo_dir"
fi
"$cli" serve --root "$dist" --models "$work/models" --addr 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [[ -s "$work/serve.out" ]] && break
    sleep 0.1
done
url="$(awk 'NR == 1 { print $2 }' "$work/serve.out")"
E2E_URL="$url" HUB_BASE="${url}models/hub" HUB_REPO=bench/bloom-560m node tests/e2e/hub_memory.mjs
