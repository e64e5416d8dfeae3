#!/usr/bin/env bash
# Builds the JavaScript package pkg/: the wasm of src/bin/pkg/ (release, wasm32) run through
# wasm-bindgen --target web into pkg/wasm/ (build output, git-ignored); the hand-written files
# of pkg/ (index.js, worker.js, story-writer.js, index.d.ts, package.json, README.md) use it as
# it is. Installs what is missing (the wasm32 target, wasm-bindgen-cli at Cargo.lock's version)
# with the functions of scripts/lib.sh. Run from anywhere: ./scripts/build_pkg.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_cargo
ensure_wasm_target
ensure_wasm_bindgen
build_pkg
