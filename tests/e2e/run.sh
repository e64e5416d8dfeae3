#!/usr/bin/env bash
# End-to-end tests of the web app in headless Chromium and Firefox ESR (tests/e2e/app.test.mjs,
# page.test.mjs, isolation.test.mjs, hub.test.mjs, storage.test.mjs, autopilot.test.mjs, view.test.mjs, tabs.test.mjs, crash.test.mjs,
# import.test.mjs and layout.test.mjs, node + playwright-core), and of the JavaScript package pkg/
# (pkg.test.mjs and element.test.mjs: examples/ served from the repository's root; pkg/ must have
# been built by scripts/build_pkg.sh). Installs what
# is missing (node packages with `npm ci`, trunk, wasm-bindgen-cli, Chromium), builds the app
# (trunk) and the CLI, makes a test model directory (a tiny random q8_0 model listed in
# index.json, a corrupt .gguf that is not listed, and a hub stand-in), serves both with `storywriter serve` on a free port, runs the
# tests and stops the server.
#
# Environment: E2E_BROWSERS="chromium firefox" runs the whole suite once per named browser
# (default: chromium; Firefox ESR through tests/e2e/firefox_bidi.mjs) (each run's report ends with its own pass/fail counts; the run fails when one does);
# E2E_TESTS="app storage" runs only those files of tests/e2e/ (NAME.test.mjs; default all of them);
# E2E_DIST=DIR serves an already built app instead of building one (DIR must hold
# index.html); E2E_OUT=DIR is where the screenshots and the server log go (default target/e2e;
# the layout's screenshots in DIR/layout/; Firefox's in DIR/firefox/).
# Arguments are passed on to node (e.g. --test-name-pattern=export).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

OUT="${E2E_OUT:-target/e2e}"
mkdir -p "$OUT"

# The dev CLI: `cargo test` has built it already, and it only serves files and quantizes a
# tiny model here (a release build would cost minutes and ~600 MB more of target/).
prepare_browser_run "${E2E_DIST:-}" dev
BROWSERS="${E2E_BROWSERS:-chromium}"
if [[ " $BROWSERS " == *" firefox "* ]]; then
    ensure_firefox
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/storywriter-e2e.XXXXXX")"
cleanup() {
    stop_serves
    rm -rf "$WORK"
}
trap cleanup EXIT

MODELS="$WORK/models"
mkdir -p "$MODELS"
make_random_model "$CLI" tiny "$MODELS/demo-tiny-q8_0.gguf"
write_model_index "$MODELS"
# Written after the index, so that the page does not pick it by itself: the first 600 bytes of a
# valid file (a cut-off download).
head -c 600 "$MODELS/demo-tiny-q8_0.gguf" >"$MODELS/corrupt.gguf"
# A tiny checkpoint laid out as on the Hugging Face hub ({base}/{repo}/resolve/main/{file}; served
# by hub.test.mjs's own stand-in, tests/e2e/hub_standin.mjs), and the q8_0 and q4_0 files
# `storywriter quantize` makes of it: hub.test.mjs checks
# that the page's hub loader writes the same bytes (through a symlink, so that the file's
# general.name is the repository's name, as in the page).
HUB_DIR="$MODELS/hub/test/bloom-tiny/resolve/main"
"$CLI" init-random --config tiny --seed 1 --output "$HUB_DIR"
ln -s "$HUB_DIR" "$WORK/bloom-tiny"
for dtype in q8_0 q4_0; do
    "$CLI" quantize --input "$WORK/bloom-tiny" --dtype $dtype --output "$WORK/bloom-tiny-$dtype.gguf"
done

start_serve "$CLI" "$DIST" "$MODELS" "$OUT/serve.log"
URL="$SERVE_URL"
echo "serving $DIST and $MODELS at $URL"

TESTS=()
for name in ${E2E_TESTS:-app page isolation hub storage autopilot view tabs crash import layout pkg element}; do
    TESTS+=("tests/e2e/$name.test.mjs")
done
# The package's examples (pkg.test.mjs, element.test.mjs) as a site would serve them: the
# repository's root (examples/ and the pkg/ that scripts/build_pkg.sh made) and the models.
PKG_URL=""
if [[ " ${TESTS[*]} " == *" tests/e2e/pkg.test.mjs "* || " ${TESTS[*]} " == *" tests/e2e/element.test.mjs "* ]]; then
    if [[ ! -f pkg/wasm/storywriter_bg.wasm ]]; then
        echo "error: pkg/wasm/ is missing: run ./scripts/build_pkg.sh before the package's tests" >&2
        exit 1
    fi
    start_serve "$CLI" . "$MODELS" "$OUT/serve-pkg.log"
    PKG_URL="$SERVE_URL"
    echo "serving the repository's root and $MODELS at $PKG_URL"
fi
status=0
for browser in $BROWSERS; do
    echo "==> e2e suite in $browser"
    # Chromium's screenshots in $OUT as before, Firefox's in $OUT/firefox.
    out="$OUT"
    [[ $browser == chromium ]] || out="$OUT/$browser"
    E2E_BROWSER="$browser" E2E_URL="$URL" E2E_PKG_URL="$PKG_URL" E2E_MODELS="$MODELS" E2E_OUT="$out" \
        E2E_SERVE_LOG="$OUT/serve.log" E2E_HUB_REFERENCES="$WORK" \
        node --test --test-concurrency=1 --test-reporter=spec "$@" "${TESTS[@]}" || status=1
done
exit $status
