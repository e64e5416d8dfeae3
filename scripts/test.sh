#!/usr/bin/env bash
# The whole test suite: formatting, lints, native tests, the wasm32 tests in headless
# Chromium and in headless Firefox ESR, the JavaScript package pkg/ (built, its types checked
# with tsc), and the end-to-end tests of the web app and the package (tests/e2e/run.sh) in both
# browsers. CI runs it through .ci/run; run it by hand the same way: ./scripts/test.sh
#
# It installs what is missing first (idempotent; as root, or with passwordless sudo, for apt),
# with the functions of scripts/lib.sh that scripts/serve.sh uses too:
#   * the wasm32-unknown-unknown target and the rustfmt/clippy components (rustup),
#   * chromium + chromium-driver (Debian packages) when /usr/bin/chromedriver is absent,
#   * firefox-esr (Debian package) and geckodriver (cargo install) when missing,
#   * wasm-bindgen-cli at exactly the `wasm-bindgen` version in Cargo.lock (cargo install),
#   * trunk (cargo install --locked trunk@0.21.14), to build the web app, and the pinned nightly
#     with rust-src (rustup), to build its threaded worker and the fuzz targets,
#   * cargo-fuzz (cargo install), by scripts/fuzz.sh,
#   * node + npm (Debian packages) when missing, and the e2e tests' node packages (npm ci;
#     typescript among them, for the package's types),
#   * the python package datasets (pip), for tests/check_datasets.py.
#
# Test conventions
#   * Native tests: plain `#[test]` in src/ (unit) and the modules of tests/integration/ (one
#     test binary, `cargo test --test integration`; tests/integration/main.rs lists them).
#   * Browser tests: the modules of tests/wasm/ (one binary, run in Chromium with
#     `cargo test --target wasm32-unknown-unknown --test wasm`, and in Firefox the same way with
#     GECKODRIVER set to geckodriver's path). They use `#[wasm_bindgen_test]`
#     instead of `#[test]` and load fixtures with `include_bytes!` (the browser has no file
#     system); see tests/wasm/main.rs. Lib unit tests are not run on wasm: the runner only
#     executes `#[wasm_bindgen_test]` functions, so a `#[test]` compiled for wasm would be linked
#     and then silently skipped. The kernels module runs a second time in the build with relaxed
#     SIMD (`wasm-relaxed`), so both dot-product paths are tested.
#
# Environment knobs: FAIL_FAST=1 stops at the first failing step (default: run every step and
# report all failures); SKIP_WASM=1 skips the browser tests, wasm and e2e (local use only; CI
# never sets it);
# WASM_BINDGEN_TEST_TIMEOUT (seconds for one wasm test binary, default 600 here);
# FUZZ_SECONDS (seconds per fuzz target, default 20; 0 skips fuzzing, local use only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
SUMMARY=()
FAILED=()
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/storywriter-test.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT
SCRIPT_START=$SECONDS

if [[ -t 1 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
log() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"; }

# run_step NAME CMD...: runs CMD with its output shown and also kept in $LOG_DIR/NAME.log (so
# test counts can be summed at the end), times it, and records the outcome.
run_step() {
    local name="$1"
    shift
    log "$name: $*"
    local start=$SECONDS status=0
    "$@" 2>&1 | tee "$LOG_DIR/$name.log" || status=$?
    local took=$((SECONDS - start))
    if [[ $status -eq 0 ]]; then
        SUMMARY+=("$(printf '  %-16s ok      %4ds' "$name" "$took")")
    else
        SUMMARY+=("$(printf '  %-16s FAILED  %4ds  (exit %d)' "$name" "$took" "$status")")
        FAILED+=("$name")
        if [[ "${FAIL_FAST:-0}" == 1 ]]; then
            finish
        fi
    fi
}

# Free space where target/ lives and the size of target/ (a full disk fails a build with a bare
# "could not compile" in the middle of a step).
disk_report() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    printf '%s free, target/ %s' \
        "$(df -h --output=avail "$ROOT" | tail -n1 | tr -d ' ')" \
        "$(du -sh "$target" 2>/dev/null | cut -f1 || echo 0)"
}

skip_step() {
    SUMMARY+=("$(printf '  %-16s skipped        (%s)' "$1" "$2")")
    log "$1: skipped ($2)"
}

# The e2e tests that failed, each with the first line of its error (a CI log may show only the
# end of the output, and the summary is there).
e2e_failures() {
    local log
    for log in "$LOG_DIR/e2e.log" "$LOG_DIR/e2e-ff.log"; do
        [[ -f "$log" ]] || continue
        echo "  ${log##*/}:"
        awk '
        /^✖ failing tests:/ { failing = 1; next }
        failing && /^✖ / { name = $0; sub(/^✖ /, "", name); want = 1; next }
        failing && want && NF { sub(/^ +/, ""); printf "  ✖ %.90s: %.150s\n", name, $0; want = 0 }
    ' "$log" | head -n 12
    done
}

# count_tests LOG...: "PASSED FAILED SKIPPED" summed over the named logs of $LOG_DIR (missing
# ones count nothing).
count_tests() {
    local passed=0 failed=0 ignored=0 line name
    for name in "$@"; do
        [[ -f "$LOG_DIR/$name.log" ]] || continue
        # libtest and wasm-bindgen-test-runner both close with
        # "test result: ok. N passed; M failed; K ignored; ..."
        while IFS= read -r line; do
            [[ $line =~ ([0-9]+)\ passed\;\ ([0-9]+)\ failed\;\ ([0-9]+)\ ignored ]] || continue
            passed=$((passed + BASH_REMATCH[1]))
            failed=$((failed + BASH_REMATCH[2]))
            ignored=$((ignored + BASH_REMATCH[3]))
        done < <(grep 'test result:' "$LOG_DIR/$name.log" || true)
        # node's test runner (e2e) closes with "ℹ pass N", "ℹ fail N", "ℹ skipped N" lines.
        while IFS= read -r line; do
            [[ $line =~ (pass|fail|skipped)\ ([0-9]+)$ ]] || continue
            case "${BASH_REMATCH[1]}" in
                pass) passed=$((passed + BASH_REMATCH[2])) ;;
                fail) failed=$((failed + BASH_REMATCH[2])) ;;
                skipped) ignored=$((ignored + BASH_REMATCH[2])) ;;
            esac
        done < <(grep -E '^[^ ]+ (pass|fail|skipped) [0-9]+$' "$LOG_DIR/$name.log" || true)
    done
    echo "$passed $failed $ignored"
}

# Prints the summary and exits: non-zero when any step failed.
finish() {
    local passed=0 failed=0 ignored=0 group p f i
    local -a per_group=()
    # The tests of each browser counted apart (the wasm binaries and the e2e suite).
    for group in "native:native-tests" "chromium:wasm-tests wasm-relaxed e2e" \
        "firefox:wasm-tests-ff wasm-relaxed-ff e2e-ff"; do
        # shellcheck disable=SC2086 # the logs of a group are separate words
        read -r p f i < <(count_tests ${group#*:})
        per_group+=("$(printf '    %-14s %d passed, %d failed, %d skipped' "${group%%:*}" "$p" "$f" "$i")")
        passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
    done
    echo
    echo "================================ storywriter test summary ================================"
    printf '%s\n' "${SUMMARY[@]}"
    echo "  total time     $((SECONDS - SCRIPT_START))s"
    echo "  disk           $(disk_report)"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo "  FAILED steps:  ${FAILED[*]}"
        e2e_failures
    fi
    echo "  tests per browser (wasm binaries and e2e suite):"
    printf '%s\n' "${per_group[@]}"
    echo "=========================================================================================="
    echo "tests: $passed passed, $failed failed, $ignored skipped"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Setup: install whatever is missing. Failures here abort at once.
# ---------------------------------------------------------------------------------------------
setup_start=$SECONDS
log "setup"

ensure_cargo
ensure_wasm_target
ensure_lint_components
ensure_chromium
ensure_firefox
ensure_wasm_bindgen
ensure_trunk
ensure_node
ensure_e2e_packages

# Hugging Face `datasets`, for tests/check_datasets.py (PyPI is reachable; when the install
# fails, that one check is reported as skipped instead of failing the suite).
if ! python3 -c 'import datasets' >/dev/null 2>&1; then
    echo "installing the python package datasets with pip"
    python3 -m pip install --quiet datasets || echo "warning: pip install datasets failed" >&2
fi

echo "cargo:        $(cargo --version)"
echo "wasm-bindgen: $(wasm-bindgen --version)"
echo "chromium:     $(chromium --version 2>/dev/null | tail -n1)"
echo "chromedriver: $(/usr/bin/chromedriver --version)"
echo "firefox:      $("$FIREFOX" --version 2>/dev/null | tail -n1)"
echo "geckodriver:  $("$GECKODRIVER_BIN" --version | head -n1)"
echo "trunk:        $(trunk --version)"
echo "node:         $(node --version)"
echo "disk:         $(disk_report)"
SUMMARY+=("$(printf '  %-16s ok      %4ds' setup $((SECONDS - setup_start)))")

# How wasm-bindgen-test-runner (the wasm32 `runner` in .cargo/config.toml) drives Chromium.
export CHROMEDRIVER=/usr/bin/chromedriver  # and not a geckodriver that may come first in PATH
unset GECKODRIVER  # the runner prefers it to CHROMEDRIVER; the Firefox steps set it themselves
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/webdriver.json"  # extra Chromium flags
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"  # whole binary; default 20s
export WASM_BINDGEN_TEST_DRIVER_TIMEOUT="${WASM_BINDGEN_TEST_DRIVER_TIMEOUT:-60}"
if [[ -n "${RUSTFLAGS:-}" ]]; then
    echo "warning: RUSTFLAGS is set, so .cargo/config.toml's wasm32 rustflags (+simd128) are ignored" >&2
fi
if [[ "${CI:-}" == true ]]; then
    export CARGO_INCREMENTAL=0  # fresh clone: incremental state is never reused
fi

# ---------------------------------------------------------------------------------------------
# Checks and tests
# ---------------------------------------------------------------------------------------------
run_step fmt cargo fmt --all --check
run_step clippy cargo clippy --all-targets -- -D warnings
run_step clippy-wasm cargo clippy --target "$WASM_TARGET" --lib --bins --test wasm -- -D warnings
run_step native-tests cargo test

# ---- Fuzzing ---------------------------------------------------------------------------------
# Each fuzz target of fuzz/ briefly (scripts/fuzz.sh: cargo-fuzz on the pinned nightly, seeded
# from tests/fixtures/): FUZZ_SECONDS per target (default 20; 0 skips the step). The build takes
# most of the step's time (9½ min from scratch on a busy 2-core machine, then 8 × FUZZ_SECONDS);
# a crash fails the step and leaves its input in fuzz/artifacts/.
if [[ "${FUZZ_SECONDS:-20}" == 0 ]]; then
    skip_step fuzz "FUZZ_SECONDS=0"
else
    run_step fuzz ./scripts/fuzz.sh all "${FUZZ_SECONDS:-20}"
fi

if [[ "${SKIP_WASM:-0}" == 1 && "${CI:-}" != true ]]; then
    skip_step wasm-tests "SKIP_WASM=1"
else
    run_step wasm-tests cargo test --target "$WASM_TARGET" --test wasm
    # The kernels again in the build with relaxed SIMD (the threaded web worker's), in a target
    # directory of its own since the flags differ.
    run_step wasm-relaxed env RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/relaxed" \
        cargo test --target "$WASM_TARGET" --test wasm kernels
    # The same two binaries (already built) in headless Firefox ESR: the runner drives it through
    # geckodriver when GECKODRIVER is set (webdriver.json only holds Chromium's flags).
    run_step wasm-tests-ff env -u WASM_BINDGEN_TEST_WEBDRIVER_JSON GECKODRIVER="$GECKODRIVER_BIN" \
        cargo test --target "$WASM_TARGET" --test wasm
    run_step wasm-relaxed-ff env -u WASM_BINDGEN_TEST_WEBDRIVER_JSON GECKODRIVER="$GECKODRIVER_BIN" \
        RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/relaxed" \
        cargo test --target "$WASM_TARGET" --test wasm kernels
fi

# ---- The web app in headless Chromium and Firefox ESR ----------------------------------------
# tests/e2e/run.sh builds the app (trunk) and the CLI, serves them with a tiny random model and
# drives the page with playwright-core (tests/e2e/*.test.mjs); screenshots in target/e2e/.
# The JavaScript package first (scripts/build_pkg.sh: src/bin/pkg/ through wasm-bindgen into
# pkg/wasm/, about a minute on the library the wasm steps built), its TypeScript types checked by
# tsc on tests/pkg/types.ts (every export used), then the e2e suite, whose pkg.test.mjs and
# element.test.mjs drive examples/pkg-basic.html and examples/embed-element.html.
# e2e-ff runs the files shared with Firefox (E2E_FIREFOX_TESTS) in Firefox ESR on the app the
# e2e step built and the package it built (tests/e2e/lib.mjs, firefox_bidi.mjs; about 5 minutes
# on a 2-core machine); the heavy soak and benchmark files, storage (CDP heap) and layout (media
# and font emulation Firefox ESR's BiDi lacks) stay Chromium's.
E2E_FIREFOX_TESTS="app page isolation hub tabs import crash autopilot view pkg element"
if [[ "${SKIP_WASM:-0}" == 1 && "${CI:-}" != true ]]; then
    skip_step pkg-build "SKIP_WASM=1"
    skip_step e2e "SKIP_WASM=1"
    skip_step e2e-ff "SKIP_WASM=1"
else
    run_step pkg-build ./scripts/build_pkg.sh
    run_step pkg-types tests/e2e/node_modules/.bin/tsc -p tests/pkg/tsconfig.json
    run_step e2e env E2E_BROWSERS=chromium bash tests/e2e/run.sh
    run_step e2e-ff env E2E_BROWSERS=firefox E2E_TESTS="$E2E_FIREFOX_TESTS" E2E_DIST=dist \
        E2E_OUT=target/e2e-ff bash tests/e2e/run.sh
fi

# ---- Python dataset checks ------------------------------------------------------------------
# tests/check_datasets.py exports tests/fixtures/records_sample.jsonl with the CLI and loads the
# result with Hugging Face `datasets` (both files and both configs of the dataset card). It needs
# the Python package `datasets`, which the setup above installs.
if python3 -c 'import datasets' >/dev/null 2>&1; then
    run_step datasets python3 tests/check_datasets.py
else
    echo "SKIPPED: tests/check_datasets.py (python3 cannot import datasets; pip install datasets)"
    skip_step datasets "python package datasets not installed"
fi
# ---- end of Python dataset checks -----------------------------------------------------------

finish
