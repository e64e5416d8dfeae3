#!/usr/bin/env bash
# `storywriter stats` on a generated log of 1,000,000 records (about 2.3 GB of JSON lines):
# wall time and peak resident memory, as measured by /usr/bin/time -v.
# Usage: ./scripts/bench_stats.sh [WORK_DIR] [RECORDS]   (default target/bench-stats, 1000000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-target/bench-stats}"
records="${2:-1000000}"
bin="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$work"
cargo build --release --quiet --bin storywriter --example gen_records
log="$work/records-$records.jsonl"
[[ -f "$log" ]] || "$bin/examples/gen_records" "$log" "$records" 0
echo "log: $log ($(du -h "$log" | cut -f1))"
echo "uptime: $(uptime)"
/usr/bin/time -v "$bin/storywriter" stats "$log" --output "$work/steps.json" 2>"$work/time.txt" ||
    { cat "$work/time.txt"; exit 1; }
grep -E '^stats:' "$work/time.txt"
grep -E 'Elapsed \(wall clock\)|Maximum resident set size|User time|System time' "$work/time.txt"
