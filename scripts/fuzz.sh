#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read outside input (fuzz/, cargo-fuzz + libFuzzer
# on the pinned nightly of scripts/lib.sh). Installs what is missing first (the nightly,
# cargo-fuzz), seeds each target's corpus from tests/fixtures/, then runs:
#
#   ./scripts/fuzz.sh TARGET SECONDS     one target (see `ls fuzz/fuzz_targets`)
#   ./scripts/fuzz.sh all SECONDS        each target in turn
#   ./scripts/fuzz.sh list               the targets' names
#
# A crash leaves its input in fuzz/artifacts/TARGET/ and ends the script with an error. The
# corpora grow in fuzz/corpus/TARGET/ (git-ignored) and are reused by later runs. Built with
# debug assertions (overflow checks) and without a sanitizer: the parsers are safe Rust, and
# what is looked for are panics, overflows and absurd allocations.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

TARGETS=(gguf safetensors_header config_json tokenizer_json step_table record_line mongoexport_line worker_message)
FUZZ_TARGET_DIR="${CARGO_TARGET_DIR:-target}/fuzz"

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2
    exit 2
}

# cargo-fuzz, when missing (no --locked: the tool's own lock file is not always installable).
ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz"
        cargo install cargo-fuzz
    fi
}

# seed TARGET: copies the fixtures that suit TARGET into fuzz/corpus/TARGET/ (small ones only:
# a GGUF file is cut to its first 96 KiB, header, metadata and tokenizer).
seed() {
    local target="$1" dir="fuzz/corpus/$1" f
    mkdir -p "$dir"
    case "$target" in
        gguf)
            for f in tests/fixtures/*.gguf; do
                head -c 98304 "$f" >"$dir/seed-$(basename "$f")"
            done
            ;;
        safetensors_header)
            for f in tests/fixtures/tiny-odd/model.safetensors tests/fixtures/tiny-sharded/*.safetensors; do
                python3 -c 'import sys, struct
data = open(sys.argv[1], "rb").read(8)
n = struct.unpack("<Q", data)[0]
sys.stdout.buffer.write(open(sys.argv[1], "rb").read(8 + n))' "$f" >"$dir/seed-$(basename "$(dirname "$f")")-$(basename "$f")"
            done
            ;;
        config_json)
            for f in tests/fixtures/tiny-*/config.json; do
                cp "$f" "$dir/seed-$(basename "$(dirname "$f")").json"
            done
            ;;
        tokenizer_json) cp tests/fixtures/tiny-odd/tokenizer.json "$dir/seed-tokenizer.json" ;;
        step_table) cp www/params/steps.json "$dir/seed-steps.json"
            cp tests/fixtures/short_steps.json "$dir/seed-short_steps.json" ;;
        record_line | mongoexport_line)
            # One line a file: the first 40 records of the sample log.
            head -n 40 tests/fixtures/records_sample.jsonl | split -l 1 - "$dir/seed-record-" ;;
        worker_message) cp fuzz/seeds/worker_message/* "$dir/" ;;
        *) usage ;;
    esac
}

# run TARGET SECONDS
run() {
    local target="$1" seconds="$2"
    seed "$target"
    echo "==> fuzzing $target for ${seconds}s"
    cargo +"$NIGHTLY_TOOLCHAIN" fuzz run -s none -a --target-dir "$FUZZ_TARGET_DIR" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 2>&1 |
        grep -v '^#[0-9]*\s*\(NEW\|REDUCE\|pulse\)' || return 1
}

[[ $# -ge 1 ]] || usage
if [[ $1 == list ]]; then
    printf '%s\n' "${TARGETS[@]}"
    exit 0
fi
[[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
ensure_cargo
ensure_nightly
ensure_cargo_fuzz
if [[ $1 == all ]]; then
    cargo +"$NIGHTLY_TOOLCHAIN" fuzz build -s none -a --target-dir "$FUZZ_TARGET_DIR"
    for target in "${TARGETS[@]}"; do
        run "$target" "$2"
    done
else
    run "$1" "$2"
fi
