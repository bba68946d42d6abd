#!/bin/bash
# idle.sh BUILD_DIR [MODULES] [UPDATE_TIMEOUT] [SECONDS]: the CPU an idle
# lars-agent spends per second, per thread, with MODULES (100000) modules of
# 10 nodes learned (dns_bench) and the statistics flush off
# (report_interval 86400). UPDATE_TIMEOUT (3600) 15 includes the route
# refresh. Every module is learned first (lars-bench --mode warm), then CPU
# is read from /proc/PID/task/*/stat over SECONDS (30). Port: LARS_BENCH_PORT
# (38888) + 700. docs/PERFORMANCE.md, "Idle housekeeping at 100k modules".
set -euo pipefail
build=$(cd "$1" && pwd)
modules=${2:-100000}
update=${3:-3600}
secs=${4:-30}
port=$((${LARS_BENCH_PORT:-38888} + 700))
tmp=$(mktemp -d)
agent=
trap '[ -n "$agent" ] && kill "$agent" 2>/dev/null; rm -rf "$tmp"' EXIT
cat >"$tmp/agent.conf" <<CONF
agent: { listen = "127.0.0.1"; udp_base_port = $port; workers = 2; log_level = "warn";
         plugin_dir = "$build/plugins"; cache_dir = ""; };
policy: { plugin = "lb_lars"; update_timeout = $update; };
dns: { plugin = "dns_bench"; modules = $modules; nodes = 10; };
reporter: { plugin = "report_log"; report_interval = 86400; path = "/dev/null"; };
CONF
"$build/bin/lars-agent" -f -c "$tmp/agent.conf" 2>"$tmp/agent.err" &
agent=$!
sleep 0.5
warm=$("$build/bin/lars-bench" --port "$port" --workers 2 --mode warm --modules "$modules" \
    --threads 2 --depth 64 --json)
echo "learned $(sed -n 's/.*"ready":\([0-9]*\).*/\1/p' <<<"$warm") of $modules modules"
sleep 3 # the last requests' modules settle
snap() { for t in /proc/"$agent"/task/*; do echo "$(cat "$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"; done; }
snap >"$tmp/s0"
sleep "$secs"
snap >"$tmp/s1"
hz=$(getconf CLK_TCK)
echo "idle agent, $modules modules, update_timeout $update, over $secs s (ms of CPU per second):"
paste "$tmp/s0" "$tmp/s1" | awk -v hz="$hz" -v s="$secs" '
    { printf "  %-15s %6.1f\n", $1, ($4 - $2) * 1000 / hz / s; t += $4 - $2 }
    END { printf "  %-15s %6.1f\n", "whole agent", t * 1000 / hz / s }'
