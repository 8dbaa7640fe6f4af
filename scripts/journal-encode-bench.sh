#!/usr/bin/env bash
# Instructions per record of the journal's batch encoder for 10 to 10^6 records (callgrind counts instructions,
# exactly and independently of the machine's load). Linear encoding shows a flat column.
#   bash scripts/journal-encode-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
swift build -c release --package-path Benchmarks/JournalEncode --scratch-path .build-bench 2>&1 | tail -n 1
bin=$(swift build -c release --package-path Benchmarks/JournalEncode --scratch-path .build-bench --show-bin-path)/journal-encode-bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Whole-program counts minus a run that encodes nothing: what is left is the encoding of N records.
total() { valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$bin" "$1" >/dev/null 2>&1; awk '/^(summary|totals):/ { print $2; exit }' "$out/cg.$1"; }
base=$(total 0)
printf '%10s %16s %12s\n' records instructions per-record
for n in 10 1000 100000 1000000; do
    ir=$(($(total "$n") - base))
    printf '%10d %16d %12.1f\n' "$n" "$ir" "$(echo "$ir / $n" | bc -l)"
done
