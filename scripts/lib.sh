# Shared set-up for scripts/test.sh, scripts/serve.sh and tests/e2e/run.sh; source it from the
# repository root (`source scripts/lib.sh`). Every `ensure_*` installs what is missing and does
# nothing when it is already there, so the scripts work on a fresh machine and stay fast after.

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
WASM_TARGET=wasm32-unknown-unknown
# The trunk release the app's index.html and Trunk.toml are written for.
TRUNK_VERSION=0.21.14

# The nightly the threaded web worker is built with (shared memory needs std rebuilt with
# atomics, `-Z build-std`, which only nightly has); pinned so the build does not move under us.
NIGHTLY_TOOLCHAIN=nightly-2026-05-20

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "error: '$*' needs root (or passwordless sudo)" >&2
        return 1
    fi
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found (install rustup first: https://rustup.rs)" >&2
        return 1
    fi
}

# The wasm32-unknown-unknown target (when rustup manages the toolchain).
ensure_wasm_target() {
    if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
        rustup target add "$WASM_TARGET"
    fi
}

# rustfmt and clippy (when rustup manages the toolchain).
ensure_lint_components() {
    if command -v rustup >/dev/null 2>&1; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}

# Chromium and its driver, from Debian (browser downloads are not reachable here).
ensure_chromium() {
    if [[ ! -x /usr/bin/chromedriver ]] || ! command -v chromium >/dev/null 2>&1; then
        echo "installing chromium + chromium-driver with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y chromium chromium-driver
    fi
}

# Firefox ESR (Debian's firefox-esr) and geckodriver (built from crates.io; Debian has no
# package of it): the second browser of the wasm and end-to-end tests. Sets (and exports)
# FIREFOX to the browser's path, and GECKODRIVER_BIN to the driver's (not GECKODRIVER, which
# wasm-bindgen-test-runner prefers to CHROMEDRIVER whenever it is set).
GECKODRIVER_VERSION=0.37.1
ensure_firefox() {
    if ! command -v firefox-esr >/dev/null 2>&1; then
        echo "installing firefox-esr with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y firefox-esr
    fi
    FIREFOX="$(command -v firefox-esr)"
    export FIREFOX
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if [[ ! -x "$cargo_bin/geckodriver" ]]; then
        echo "installing geckodriver $GECKODRIVER_VERSION with cargo install (a few minutes once)"
        cargo install --locked "geckodriver@$GECKODRIVER_VERSION" ||
            cargo install "geckodriver@$GECKODRIVER_VERSION"
    fi
    GECKODRIVER_BIN="$cargo_bin/geckodriver"
}

# node and npm, for the end-to-end tests (Debian packages; node 20 or newer).
ensure_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "installing nodejs + npm with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y nodejs npm
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if ((major < 20)); then
        echo "error: node $(node --version) is too old for playwright-core; install node 20 or newer" >&2
        return 1
    fi
}

# wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock (the CLI and
# the crate must agree; trunk uses this one too).
ensure_wasm_bindgen() {
    local want have
    want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
    if [[ -z "$want" ]]; then
        echo "error: no wasm-bindgen package in Cargo.lock" >&2
        return 1
    fi
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
    if [[ "$have" != "$want" ]] || ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
        echo "installing wasm-bindgen-cli $want (found: ${have:-none})"
        # No --locked: one of the CLI's locked dependencies is no longer on the registry.
        cargo install wasm-bindgen-cli --version "$want"
    fi
}

# trunk, the web app's build tool, at $TRUNK_VERSION (building it takes a few minutes once).
ensure_trunk() {
    local have
    have="$(trunk --version 2>/dev/null | awk '{ print $2 }' || true)"
    if [[ "$have" != "$TRUNK_VERSION" ]]; then
        echo "installing trunk $TRUNK_VERSION (found: ${have:-none}); this takes a few minutes"
        cargo install --locked "trunk@$TRUNK_VERSION"
    fi
}

# Everything `trunk build` of the web app needs.
ensure_web_toolchain() {
    ensure_cargo
    ensure_wasm_target
    ensure_wasm_bindgen
    ensure_trunk
}

# $NIGHTLY_TOOLCHAIN with rust-src (for -Z build-std).
ensure_nightly() {
    if ! rustup component list --installed --toolchain "$NIGHTLY_TOOLCHAIN" 2>/dev/null | grep -q '^rust-src'; then
        echo "installing $NIGHTLY_TOOLCHAIN with rust-src (for the threaded web worker)"
        rustup toolchain install "$NIGHTLY_TOOLCHAIN" --profile minimal --component rust-src
    fi
}

# build_threaded_worker DIST: the threaded model worker into DIST/threads/ (worker.js and
# worker_bg.wasm, loaded by www/worker_threads.js): shared memory (atomics and bulk memory, std
# rebuilt on the pinned nightly, up to 4 GiB), relaxed SIMD, and rayon's pool on Web Workers
# (feature `threads`: wasm-bindgen-rayon). In a target directory of its own: its flags differ.
build_threaded_worker() {
    local dist="$1" target="${CARGO_TARGET_DIR:-target}/threads" link_arg link_args=()
    ensure_nightly
    # The linker makes the memory shared and imported (wasm-bindgen then emits the thread glue)
    # and exports the thread-local storage symbols; `cargo rustc` passes these to the binary only.
    for link_arg in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls \
        --export=__tls_size --export=__tls_align --export=__tls_base; do
        link_args+=(-C "link-arg=$link_arg")
    done
    RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128,+relaxed-simd" \
        CARGO_TARGET_DIR="$target" cargo +"$NIGHTLY_TOOLCHAIN" rustc --release --target "$WASM_TARGET" \
        --bin worker --features threads -Z build-std=panic_abort,std -- "${link_args[@]}" || return 1
    wasm-bindgen --target web --out-dir "$dist/threads" --out-name worker \
        "$target/$WASM_TARGET/release/worker.wasm" && start_pool_from_own_url "$dist"
}

# start_pool_from_own_url DIST: makes rayon's pool start its Web Workers from their script's own
# address. wasm-bindgen-rayon (no-bundler) starts each from a copy of the script in a blob: URL,
# so that a script on another origin (a CDN) can start them; in Firefox ESR a `new Worker` of a
# blob: URL inside the model worker now and then never returns (about 1 start in 25 on the
# 2-core VM, none in 138 from the script's own address), which hangs the model worker before its
# own timer can fire. The app serves its scripts from its own origin, so the address works.
start_pool_from_own_url() {
    local dist="$1" helpers
    helpers=("$dist"/threads/snippets/wasm-bindgen-rayon-*/src/workerHelpers.no-bundler.js)
    if [[ ${#helpers[@]} -ne 1 || ! -f ${helpers[0]} ]] || ! grep -q 'new Worker(url, {' "${helpers[0]}"; then
        echo "error: $dist/threads/snippets/ has no wasm-bindgen-rayon workerHelpers.no-bundler.js" >&2
        echo "       starting its workers with \`new Worker(url, {\`: see start_pool_from_own_url" >&2
        return 1
    fi
    sed -i 's/new Worker(url, {/new Worker(import.meta.url, {/' "${helpers[0]}"
}

# build_relaxed_worker DIST: the single-threaded model worker with relaxed SIMD into
# DIST/relaxed/ (worker.js and worker_bg.wasm, loaded by www/worker_loader.js?relaxed): trunk's
# worker.js with `+relaxed-simd` added, for browsers that have it on pages without threads. In a
# target directory of its own: its flags differ.
build_relaxed_worker() {
    local dist="$1" target="${CARGO_TARGET_DIR:-target}/relaxed-single"
    RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" CARGO_TARGET_DIR="$target" \
        cargo build --release --target "$WASM_TARGET" --bin worker || return 1
    wasm-bindgen --target no-modules --out-dir "$dist/relaxed" --out-name worker \
        "$target/$WASM_TARGET/release/worker.wasm"
}

# Builds the web app into dist/ (trunk build --release --offline, then the threaded worker
# into dist/threads/ and the relaxed single-threaded one into dist/relaxed/); explains a
# missing index.html.
build_web_app() {
    if [[ ! -f index.html || ! -f Trunk.toml ]]; then
        echo "error: index.html or Trunk.toml is missing in $(pwd): the web app is not in this checkout," >&2
        echo "       so there is nothing for trunk to build" >&2
        return 1
    fi
    if [[ -n "${RUSTFLAGS:-}" ]]; then
        echo "warning: RUSTFLAGS is set, so .cargo/config.toml's wasm32 rustflags (+simd128) are ignored" >&2
    fi
    trunk build --release --offline && build_threaded_worker dist && build_relaxed_worker dist
}

# The node packages of tests/e2e (npm ci): playwright-core drives Chromium, @wllama/wllama is
# the browser benchmarks' peer, typescript checks the package's types (tests/pkg/).
ensure_e2e_packages() {
    local package
    for package in playwright-core @wllama/wllama typescript; do
        if [[ ! -d tests/e2e/node_modules/$package ]]; then
            (cd tests/e2e && npm ci --no-audit --no-fund)
            return
        fi
    done
}

# prepare_browser_run PREBUILT_DIST [CLI_PROFILE]: what a run of the app in headless Chromium
# needs (cargo, Chromium, node and the e2e node packages), the app and the CLI: sets DIST to
# PREBUILT_DIST when not empty, else builds the app into dist/, and sets CLI to the
# `storywriter` binary of CLI_PROFILE (release or dev, default release). Used by
# tests/e2e/run.sh and the browser benchmarks.
prepare_browser_run() {
    ensure_cargo
    ensure_chromium
    ensure_node
    ensure_e2e_packages
    if [[ -n "${1:-}" ]]; then
        DIST="$1"
    else
        ensure_web_toolchain
        build_web_app
        DIST=dist
    fi
    CLI="$(build_cli "${2:-release}")"
}

# build_cli [release|dev]: the `storywriter` binary of that cargo profile (default release),
# built when missing or stale; prints its path.
build_cli() {
    local profile="${1:-release}" dir
    if [[ $profile == dev ]]; then dir=debug; else dir="$profile"; fi
    cargo build --profile "$profile" --bin storywriter >&2 || return 1
    echo "${CARGO_TARGET_DIR:-target}/$dir/storywriter"
}

# make_random_model CLI CONFIG OUT.gguf [DTYPE]: a model of the named shape (`tiny` or
# `bloom-560m`) with seeded random weights (seed 0), quantized to DTYPE (default q8_0).
make_random_model() {
    local cli="$1" config="$2" out="$3" dtype="${4:-q8_0}" tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/storywriter-model.XXXXXX")"
    "$cli" init-random --config "$config" --seed 0 --output "$tmp/hf" &&
        "$cli" quantize --input "$tmp/hf" --dtype "$dtype" --output "$out.part" &&
        mv "$out.part" "$out"
    local status=$?
    rm -rf "$tmp"
    return $status
}

# Servers started by start_serve, stopped by stop_serves.
SERVE_PIDS=()

# start_serve CLI ROOT MODELS LOG: runs `storywriter serve` of ROOT and MODELS on a free port of
# 127.0.0.1 in the background, its log in LOG; sets SERVE_PID and SERVE_URL once it listens and
# adds it to SERVE_PIDS (the caller stops them all with stop_serves, e.g. in an EXIT trap).
start_serve() {
    local cli="$1" root="$2" models="$3" log="$4" out
    out="$(mktemp "${TMPDIR:-/tmp}/storywriter-serve.XXXXXX")"
    "$cli" serve --root "$root" --models "$models" --addr 127.0.0.1:0 >"$out" 2>"$log" &
    SERVE_PID=$!
    SERVE_PIDS+=("$SERVE_PID")
    for _ in $(seq 100); do
        [[ -s "$out" ]] && break
        if ! kill -0 "$SERVE_PID" 2>/dev/null; then
            echo "error: storywriter serve exited; its log:" >&2
            cat "$log" >&2
            rm -f "$out"
            return 1
        fi
        sleep 0.1
    done
    SERVE_URL="$(awk 'NR == 1 { print $2 }' "$out")"
    rm -f "$out"
    if [[ "$SERVE_URL" != http://* ]]; then
        echo "error: storywriter serve did not print its address" >&2
        kill "$SERVE_PID" 2>/dev/null || true
        return 1
    fi
}

# stop_serves: stops every server start_serve started.
stop_serves() {
    local pid
    for pid in ${SERVE_PIDS[@]+"${SERVE_PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVE_PIDS=()
}

# write_model_index DIR: DIR/index.json listing every .gguf in DIR for the web app
# ({"models":[{"file","label","demo","bytes"}]}), real models first (the page loads the first
# one); files named demo-* or random-* are demos with random weights.
write_model_index() {
    local dir="$1" path name stem label demo first=1
    local -a real=() demos=()
    for path in "$dir"/*.gguf; do
        [[ -f $path ]] || continue
        name="${path##*/}"
        if [[ $name == demo-* || $name == random-* ]]; then demos+=("$path"); else real+=("$path"); fi
    done
    {
        printf '{"models":['
        for path in ${real[@]+"${real[@]}"} ${demos[@]+"${demos[@]}"}; do
            name="${path##*/}"
            stem="${name%.gguf}"
            if [[ $name == demo-* || $name == random-* ]]; then
                demo=true label="Demo model (random weights, $stem)"
            else
                demo=false label="$stem"
            fi
            name="${name//\\/\\\\}" && name="${name//\"/\\\"}"
            label="${label//\\/\\\\}" && label="${label//\"/\\\"}"
            ((first)) || printf ','
            first=0
            printf '\n {"file":"%s","label":"%s","demo":%s,"bytes":%d}' \
                "$name" "$label" "$demo" "$(stat -c %s "$path")"
        done
        printf '\n]}\n'
    } >"$dir/index.json.part"
    mv "$dir/index.json.part" "$dir/index.json"
    echo "$dir/index.json:"
    cat "$dir/index.json"
}

# build_pkg: the JavaScript package's wasm (src/bin/pkg/, release) through wasm-bindgen
# --target web into pkg/wasm/ (storywriter.js and storywriter_bg.wasm); see scripts/build_pkg.sh.
build_pkg() {
    local target="${CARGO_TARGET_DIR:-target}"
    cargo build --release --target "$WASM_TARGET" --bin pkg || return 1
    rm -rf pkg/wasm
    wasm-bindgen --target web --no-typescript --out-dir pkg/wasm --out-name storywriter \
        "$target/$WASM_TARGET/release/pkg.wasm"
}
