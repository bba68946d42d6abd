#!/usr/bin/env bash
# run.sh BIN_DIR CORPUS_DIR SECONDS PLUGIN_DIR: runs every fuzz target for
# SECONDS on a copy of the seed corpus; fails on the first finding.
set -euo pipefail
bin=$1 corpus=$2 seconds=$3 plugins=$4
work=$(mktemp -d /tmp/lars-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
export LARS_PLUGIN_DIR=$plugins
export LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0"
status=0
for target in datagram stream config route_file shm_ring shm_client; do
    mkdir -p "$work/$target" "$work/artifacts-$target"
    cp "$corpus/$target"/* "$work/$target"/ 2>/dev/null || true
    echo "fuzz_$target: ${seconds}s"
    if ! "$bin/fuzz_$target" -max_total_time="$seconds" -max_len=70000 -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$work/artifacts-$target/" "$work/$target" \
            > "$work/$target.log" 2>&1; then
        echo "fuzz_$target FAILED:"; tail -60 "$work/$target.log"
        ls "$work/artifacts-$target"
        for a in "$work/artifacts-$target"/*; do echo "--- $a"; xxd "$a" | head -20; done
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$target.log" | sed 's/^/  /'
    fi
done
exit $status
