#!/usr/bin/env bash
# Builds the web app and serves it on http://127.0.0.1:${PORT:-8080}/ with a model ready:
#   1. installs what is missing: the wasm32 target, wasm-bindgen-cli (the version in
#      Cargo.lock) and trunk (the first run builds them: a few minutes);
#   2. builds the command line (cargo build --release) and the app (trunk build --release
#      --offline → dist/);
#   3. when models/ holds no BLOOM-560m GGUF (no file matching *560m*.gguf), makes a demo model
#      with random weights, models/demo-random-q8_0.gguf (the page labels it as a demo);
#   4. writes models/index.json listing every .gguf in models/ (the page loads the first);
#   5. runs `storywriter serve --root dist --models models` until Ctrl-C.
# Environment: PORT (default 8080; 0 picks a free port).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

PORT="${PORT:-8080}"
if [[ ! "$PORT" =~ ^[0-9]+$ ]] || ((PORT > 65535)); then
    echo "error: PORT=$PORT is not a port number" >&2
    exit 1
fi

ensure_web_toolchain
CLI="$(build_cli)"
if ! build_web_app; then
    echo "error: the web app did not build (see above), so there is nothing to serve" >&2
    exit 1
fi

mkdir -p models
shopt -s nullglob
real_models=(models/*560m*.gguf)
shopt -u nullglob
if ((${#real_models[@]} > 0)); then
    echo "models/: ${real_models[*]}"
elif [[ -f models/demo-random-q8_0.gguf ]]; then
    echo "models/: no BLOOM-560m GGUF; using the demo model models/demo-random-q8_0.gguf"
else
    echo "models/: no BLOOM-560m GGUF; making a demo model with random weights (models/demo-random-q8_0.gguf)"
    make_random_model "$CLI" tiny models/demo-random-q8_0.gguf
fi
write_model_index models

echo "open the URL below in a browser; Ctrl-C stops the server"
exec "$CLI" serve --root dist --models models --addr "127.0.0.1:$PORT"
