#!/bin/sh
# CI smoke run of every fuzz target: replays its corpus and regression inputs,
# then fuzzes for FUZZ_SECS seconds (default 3; 9 targets ≈ 30 s plus the
# build). Needs a nightly toolchain and cargo-fuzz. New inputs go to a
# temporary directory, so the tree stays clean; crashes land in artifacts/.
# Exits non-zero on the first target that fails.
set -u
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-3}
cargo +nightly fuzz build -O || exit 1
for t in $(cargo +nightly fuzz list); do
    new=$(mktemp -d)
    log=$(mktemp)
    dirs="corpus/$t"
    if [ -d "regressions/$t" ]; then dirs="$dirs regressions/$t"; fi
    # shellcheck disable=SC2086 # $dirs is a list of directories
    cargo +nightly fuzz run -O "$t" "$new" $dirs -- \
        -max_total_time="$secs" -max_len=8192 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "$t: ${runs:-?} runs in ${secs}s, exit $rc"
    rm -rf "$new"
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
done
