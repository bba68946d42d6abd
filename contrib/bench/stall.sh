#!/usr/bin/env bash
# stall.sh [BUILD_DIR] - how long a /routes request and a SIGHUP stall the
# datagrams: an agent learns K modules (dns_bench, 3 nodes each; default
# 100000, LARS_STALL_MODULES), then lars-bench sends get_host to one module
# at 2000/s and records the worst latency, three times: quiet, while /routes
# (every module: stats_module_cap raised to K) is fetched in a loop, and
# while SIGHUP reloads follow each other. Needs curl. Builds nothing.
# Figures: docs/PERFORMANCE.md ("Stalls: /routes and SIGHUP").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-$HERE/../../build-rel}" && pwd)
BIN="$BUILD/bin"
PLUG="$BUILD/plugins"
K=${LARS_STALL_MODULES:-100000}
DUR=${LARS_STALL_DURATION:-6}
PORT=${LARS_STALL_PORT:-39888}
W=2
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lars-stall.XXXXXX")
AGENT_PID=
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/agent.conf" <<CONF
agent: { listen = "127.0.0.1"; udp_base_port = $PORT; workers = $W; log_level = "info";
         plugin_dir = "$PLUG"; stats_listen = "127.0.0.1:$((PORT + 100))"; cache_dir = "";
         stats_module_cap = $K; stats_max_output = 1073741824; stats_timeout = 120; };
policy: { plugin = "lb_lars"; update_timeout = 3600; };
dns: { plugin = "dns_bench"; modules = $K; nodes = 3; };
reporter: { plugin = "report_log"; report_interval = 3600; path = "/dev/null"; };
CONF
"$BIN/lars-agent" -f -c "$TMP/agent.conf" 2>>"$TMP/agent.log" &
AGENT_PID=$!
sleep 0.5
"$BIN/lars-bench" --port "$PORT" --workers "$W" --mode warm --modules "$K" --threads 2 --depth 64 \
    --json --max-time 120 >/dev/null
URL="http://127.0.0.1:$((PORT + 100))/routes"
bytes=$(curl -s "$URL" | wc -c)
field() { sed -n "s/.*\"$2\":\(-\{0,1\}[0-9.]*\).*/\1/p" <<<"$1"; }
probe() {
    "$BIN/lars-bench" --port "$PORT" --workers "$W" --mode pipelined --depth 4 --rate 2000 \
        --modules 1 --duration "$DUR" --json --max-time 60 --no-report
}
quiet=$(field "$(probe)" max_us)

probe >"$TMP/routes.json" &
bench=$!
n=0
while kill -0 "$bench" 2>/dev/null; do
    t0=$(date +%s%N)
    curl -s -o /dev/null "$URL"
    echo $((($(date +%s%N) - t0) / 1000000)) >>"$TMP/routes.ms"
    n=$((n + 1))
done
wait "$bench"
routes=$(field "$(cat "$TMP/routes.json")" max_us)
routes_ms=$(sort -n "$TMP/routes.ms" | tail -1)

probe >"$TMP/hup.json" &
bench=$!
h=0
sleep 0.5
while kill -0 "$bench" 2>/dev/null; do
    before=$(grep -c 'reloaded' "$TMP/agent.log" || true)
    kill -HUP "$AGENT_PID"
    h=$((h + 1))
    for _ in $(seq 1 100); do
        [ "$(grep -c 'reloaded' "$TMP/agent.log" || true)" -gt "$before" ] && break
        sleep 0.05
    done
    sleep 0.2
done
wait "$bench"
hup=$(field "$(cat "$TMP/hup.json")" max_us)
reload_ms=$(sed -n 's/.*reloaded:.*(\([0-9.]*\) ms).*/\1/p' "$TMP/agent.log" | sort -g | tail -1)
grep -q 'reload refused' "$TMP/agent.log" && { echo "stall.sh: a reload was refused" >&2; exit 1; }

echo "modules $K ($W workers), get_host at 2000/s to one module, worst latency over ${DUR}s:"
echo "  quiet                      max ${quiet} us"
echo "  /routes in a loop ($n x, ${bytes} bytes, slowest ${routes_ms} ms)  max ${routes} us"
echo "  SIGHUP in a loop ($h reloads, slowest ${reload_ms} ms)  max ${hup} us"
