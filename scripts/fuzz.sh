#!/usr/bin/env bash
# Fuzzes ringload's parsers of untrusted input for a bounded time: the result-document
# reader (on any bytes, and on edits of a search ringload wrote), the interval-log
# reader, the V2 histogram reader and the datagram header parser (loadgen/fuzz), each
# for SECONDS (default 120), one after the other, on one core. Manual or scheduled: it
# needs nightly and cargo-fuzz (rustup toolchain install nightly --profile minimal;
# cargo install cargo-fuzz), and is not part of CI's main path (CI builds the targets
# and runs their bodies in a stable test).
#
# Usage: scripts/fuzz.sh [SECONDS]   (TARGETS="histogram ..." for some only)
# The corpora grow in loadgen/fuzz/corpus/TARGET (seeded from tests/data and
# loadgen/fuzz/seeds); a crash is saved under loadgen/fuzz/artifacts/TARGET and ends
# the script with a non-zero status. No single allocation may pass 64 MB (ringload's
# bound for any malformed file); AddressSanitizer's quarantine is kept small so that
# freed memory does not count as a leak of the input's.
set -euo pipefail
cd "$(dirname "$0")/../loadgen"
seconds=${1:-120}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

seed() { # target, files...
    local dir=fuzz/corpus/$1
    shift
    mkdir -p "$dir"
    cp -n "$@" "$dir"/
}
seed result_document tests/data/*.json fuzz/seeds/search.json
seed interval_log fuzz/seeds/*.hlog
seed histogram fuzz/seeds/*.v2z
seed datagram_header fuzz/seeds/header.bin

cargo +nightly fuzz build -O
for target in ${TARGETS:-result_document search_document interval_log histogram datagram_header}; do
    extra=()
    case $target in
        result_document) max_len=65536 ;;
        # 8 bytes an edit: from the first run on, inputs of several edits.
        search_document) max_len=512 extra=(-len_control=0) ;;
        interval_log) max_len=16384 ;;
        histogram) max_len=8192 ;;
        *) max_len=64 ;;
    esac
    echo "== $target: ${seconds}s"
    start=$(date +%s)
    ASAN_OPTIONS=quarantine_size_mb=16 cargo +nightly fuzz run -O "$target" -- \
        -max_total_time="$seconds" -max_len="$max_len" -malloc_limit_mb=64 -rss_limit_mb=1024 \
        -print_final_stats=1 ${extra[@]+"${extra[@]}"}
    echo "== $target: $(($(date +%s) - start))s, corpus: $(find "fuzz/corpus/$target" -type f | wc -l) inputs, $(du -sh "fuzz/corpus/$target" | cut -f1)"
done
