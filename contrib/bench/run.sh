#!/usr/bin/env bash
# run.sh - the Lars benchmark (docs/PERFORMANCE.md), in under 5 minutes.
#
#   contrib/bench/run.sh [--check] [--quick] [BUILD_DIR]
#
# BUILD_DIR (default build-rel) must hold a build with bin/lars-agent,
# bin/lars, bin/lars-bench, bin/udp-echo and plugins/{lb_lars,dns_static,
# dns_bench,report_log}.so; this script builds nothing. It starts udp-echo
# and lars-agent on loopback (ports LARS_BENCH_PORT.. LARS_BENCH_PORT+599,
# default 38888), drives both with lars-bench and prints Markdown tables.
# Every process it starts is stopped by pid when it exits.
#
#   --check  regression check only: blocking, 2 client threads, agent vs
#            udp-echo, median of 3; exit 1 when agent/echo < LARS_BENCH_MIN_RATIO
#            (default 0.5), or when liblars pairs through shared memory are
#            not LARS_BENCH_MIN_SHM_RATIO (default 20) times those over UDP.
#            About 25 s.
#   --quick  one repetition of 1 s per cell (smoke test of the script).
#   --shm    only the liblars table: get_host + report pairs per second
#            through shared memory and through UDP (and UDP to udp-echo, the
#            reference), 1 and 2 client threads, and paced rows. About 80 s.
#
# Environment: LARS_BENCH_PORT, LARS_BENCH_DURATION (s per cell, default 2),
# LARS_BENCH_REPS (default 3, the median is reported), LARS_BENCH_MIN_RATIO,
# LARS_BENCH_MIN_SHM_RATIO,
# LARS_BENCH_WORKERS (agent workers, default 2 on <= 2 CPUs, else 3),
# LARS_BENCH_OUT (directory for results.jsonl and summary.md, default
# BUILD_DIR/bench).
set -u

CHECK=0
QUICK=0
SHM_ONLY=0
BUILD=""
for arg in "$@"; do
    case "$arg" in
    --check) CHECK=1 ;;
    --quick) QUICK=1 ;;
    --shm) SHM_ONLY=1 ;;
    -h | --help)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "run.sh: unknown option $arg" >&2
        exit 2
        ;;
    *) BUILD="$arg" ;;
    esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "$BUILD" ] || BUILD="$HERE/../../build-rel"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || {
    echo "run.sh: no build directory $BUILD (cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel)" >&2
    exit 2
}
BIN="$BUILD/bin"
PLUG="$BUILD/plugins"
for f in "$BIN/lars-agent" "$BIN/lars" "$BIN/lars-bench" "$BIN/udp-echo" "$PLUG/lb_lars.so" \
    "$PLUG/dns_static.so" "$PLUG/dns_bench.so" "$PLUG/report_log.so"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        echo "run.sh: missing $f: build it first (cmake --build $BUILD)" >&2
        exit 2
    fi
done

PORT=${LARS_BENCH_PORT:-38888}
DUR=${LARS_BENCH_DURATION:-2}
REPS=${LARS_BENCH_REPS:-3}
MIN_RATIO=${LARS_BENCH_MIN_RATIO:-0.5}
MIN_SHM_RATIO=${LARS_BENCH_MIN_SHM_RATIO:-20}
NCPU=$(nproc 2>/dev/null || echo 2)
if [ -n "${LARS_BENCH_WORKERS:-}" ]; then
    W=$LARS_BENCH_WORKERS
elif [ "$NCPU" -le 2 ]; then
    W=2
else
    W=3
fi
WARMUP=0.3
if [ "$QUICK" = 1 ]; then
    DUR=1
    REPS=1
fi
OUT=${LARS_BENCH_OUT:-$BUILD/bench}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
SUMMARY="$OUT/summary.md"
: >"$RESULTS"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lars-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
log() { printf '%s\n' "$*" >&2; }

# field JSON KEY: a number from lars-bench's one-line JSON
field() { sed -n "s/.*\"$2\":\(-\{0,1\}[0-9.]*\).*/\1/p" <<<"$1"; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
# cpur FILE: median agent CPU us per get_host (+ its report) of JSON lines;
# robust to a noisy machine, unlike QPS
cpur() { while read -r l; do awk -v c="$(field "$l" agent_cpu_s)" -v n="$(field "$l" answers)" 'BEGIN { if (n > 0) printf "%.1f\n", c * 1e6 / n; else print "nan" }'; done <"$1" | median; }
fmt0() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }

# config FILE PORT WORKERS DNS_SECTION [REPORT_INTERVAL] [UPDATE_TIMEOUT]
config() {
    cat >"$1" <<EOF
agent: { listen = "127.0.0.1"; udp_base_port = $2; workers = $3; log_level = "warn";
         plugin_dir = "$PLUG"; cache_dir = ""; };
policy: { plugin = "lb_lars"; update_timeout = ${6:-15}; };
dns: { $4 };
reporter: { plugin = "report_log"; report_interval = ${5:-10}; path = "/dev/null"; };
EOF
}

# static_routes FIRST K NODES: a dns_static routes list
static_routes() {
    awk -v F="$1" -v K="$2" -v N="$3" 'BEGIN {
        printf "plugin = \"dns_static\"; routes = (\n"
        for (m = F; m < F + K; m++) {
            printf "{ modid = %d; cmdid = 1; hosts = (", m
            for (h = 0; h < N; h++)
                printf "%s\"10.%d.%d.%d:%d\"", (h ? "," : ""), int(h / 50000), int(m / 256) % 256, m % 256, 9000 + h % 50000
            printf "); }%s\n", (m < F + K - 1 ? "," : "")
        }
        printf ");"
    }'
}

# start_agent CONF [TASKSET_CPU]: sets AGENT_PID
start_agent() {
    local pre=()
    [ -n "${2:-}" ] && pre=(taskset -c "$2")
    "${pre[@]}" "$BIN/lars-agent" -f -c "$1" 2>>"$TMP/agent.log" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
}
# start_echo PORT WORKERS [TASKSET_CPU]: sets ECHO_PID
start_echo() {
    local pre=()
    [ -n "${3:-}" ] && pre=(taskset -c "$3")
    "${pre[@]}" "$BIN/udp-echo" --port "$1" --workers "$2" --max-time 600 2>>"$TMP/echo.log" &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
}
stop_pid() {
    local p keep=()
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# wait_ready PORT WORKERS MODID: until get_host of MODID/1 answers RET_SUCC (10 s)
wait_ready() {
    local i
    for i in $(seq 1 100); do
        if "$BIN/lars-bench" --port "$1" --workers "$2" --mode warm --modid "$3" --modules 1 \
            --max-time 2 --json >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "run.sh: nothing ready on port $1 after 10 s (see $TMP/agent.log)"
    cat "$TMP/agent.log" >&2
    return 1
}

# bench LABEL ARGS...: one lars-bench run, JSON appended to results; prints the JSON
bench() {
    local label=$1
    shift
    local j
    j=$("$BIN/lars-bench" --label "$label" --json --max-time 60 "$@" 2>>"$TMP/bench.log")
    printf '%s\n' "$j" >>"$RESULTS"
    printf '%s\n' "$j"
}

# pair T MODE EXTRA...: REPS alternating runs against agent and echo; sets
# A_QPS E_QPS A_P50 A_P99 E_P50 E_P99 A_CPU (medians)
pair() {
    local t=$1 mode=$2
    shift 2
    local r a e
    : >"$TMP/a" && : >"$TMP/e"
    for r in $(seq 1 "$REPS"); do
        if [ $((r % 2)) = 1 ]; then
            a=$(bench "agent-$mode-t$t" --port "$AP" --workers "$AW" --threads "$t" --mode "$mode" --duration "$DUR" --warmup "$WARMUP" --pid "$AGENT_PID" "$@")
            e=$(bench "echo-$mode-t$t" --port "$EP" --workers "$AW" --threads "$t" --mode "$mode" --duration "$DUR" --warmup "$WARMUP" --pid "$ECHO_PID" "$@")
        else
            e=$(bench "echo-$mode-t$t" --port "$EP" --workers "$AW" --threads "$t" --mode "$mode" --duration "$DUR" --warmup "$WARMUP" --pid "$ECHO_PID" "$@")
            a=$(bench "agent-$mode-t$t" --port "$AP" --workers "$AW" --threads "$t" --mode "$mode" --duration "$DUR" --warmup "$WARMUP" --pid "$AGENT_PID" "$@")
        fi
        printf '%s\n' "$a" >>"$TMP/a"
        printf '%s\n' "$e" >>"$TMP/e"
    done
    med() { while read -r l; do field "$l" "$2"; done <"$1" | median; }
    A_QPS=$(med "$TMP/a" qps)
    E_QPS=$(med "$TMP/e" qps)
    A_P50=$(med "$TMP/a" p50_us)
    A_P99=$(med "$TMP/a" p99_us)
    E_P50=$(med "$TMP/e" p50_us)
    E_P99=$(med "$TMP/e" p99_us)
    A_CPU=$(med "$TMP/a" agent_cpu_s)
    A_CPUR=$(cpur "$TMP/a")
    E_CPUR=$(cpur "$TMP/e")
    A_ERR=$(while read -r l; do echo $(($(field "$l" timeouts) + $(field "$l" noexist) + $(field "$l" system_error) + $(field "$l" bad_answers))); done <"$TMP/a" | median)
}

START=$(date +%s)
: >"$SUMMARY"

# shm_table: liblars pairs (lars-bench --transport) against the agent on
# $AP, over shared memory and over UDP, and over UDP against udp-echo on
# $EP; medians of REPS runs.
shm_table() {
    local t tr r
    med() { while read -r l; do field "$l" "$2"; done <"$1" | median; }
    say "## liblars get_host + report pairs: shared memory and UDP"
    say ""
    say "lb_lars, 10 nodes, $AW workers; one lars_client per client thread (\`lars-bench --transport shm|udp\`); every 16th pair timed; agent CPU over the measured window"
    say ""
    say "| threads | transport | pairs/s | pairs/s per thread | p50 us | p99 us | p99.9 us | agent CPU % of a core |"
    say "|---|---|---|---|---|---|---|---|"
    for t in 1 2; do
        for tr in shm udp echo; do
            : >"$TMP/a"
            for r in $(seq 1 "$REPS"); do
                if [ "$tr" = echo ]; then
                    bench "lib-echo-t$t" --port "$EP" --workers "$AW" --threads "$t" --transport udp --duration "$DUR" --pid "$ECHO_PID" >>"$TMP/a"
                else
                    bench "lib-$tr-t$t" --port "$AP" --workers "$AW" --threads "$t" --transport "$tr" --duration "$DUR" --pid "$AGENT_PID" >>"$TMP/a"
                fi
            done
            local pairs per p50 p99 p999 cpu el
            pairs=$(med "$TMP/a" pairs_per_s)
            per=$(med "$TMP/a" per_thread_per_s)
            p50=$(med "$TMP/a" p50_us)
            p99=$(med "$TMP/a" p99_us)
            p999=$(med "$TMP/a" p999_us)
            cpu=$(while read -r l; do awk -v c="$(field "$l" agent_cpu_s)" -v e="$(field "$l" elapsed_s)" 'BEGIN { if (e > 0) printf "%.0f\n", 100 * c / e; else print "nan" }'; done <"$TMP/a" | median)
            case $tr in
            shm) SHM_PAIRS=$pairs ;;
            udp) UDP_PAIRS=$pairs ;;
            echo) ECHO_PAIRS=$pairs ;;
            esac
            say "| $t | $([ "$tr" = echo ] && echo 'UDP to udp-echo (reference)' || echo "$tr") | $(fmt0 "$pairs") | $(fmt0 "$per") | $p50 | $p99 | $p999 | $([ "$tr" = echo ] && echo "$cpu (echo)" || echo "$cpu") |"
        done
        say "| $t | ratios | shm/UDP $(ratio "$SHM_PAIRS" "$UDP_PAIRS") | UDP/echo $(ratio "$UDP_PAIRS" "$ECHO_PAIRS") | | | | |"
    done
    say ""
    # What a modest client costs the agent: paced pairs, 1 thread.
    say "paced: 1 thread, the given pairs/s (\`--rate\`), agent CPU:"
    say ""
    say "| pairs/s | transport | p50 us | p99 us | agent CPU % of a core |"
    say "|---|---|---|---|---|"
    for rate in 1000 10000; do
        for tr in shm udp; do
            : >"$TMP/a"
            for r in $(seq 1 "$REPS"); do
                bench "lib-$tr-rate$rate" --port "$AP" --workers "$AW" --threads 1 --transport "$tr" --rate "$rate" --duration "$DUR" --pid "$AGENT_PID" >>"$TMP/a"
            done
            cpu=$(while read -r l; do awk -v c="$(field "$l" agent_cpu_s)" -v e="$(field "$l" elapsed_s)" 'BEGIN { if (e > 0) printf "%.1f\n", 100 * c / e; else print "nan" }'; done <"$TMP/a" | median)
            say "| $rate | $tr | $(med "$TMP/a" p50_us) | $(med "$TMP/a" p99_us) | $cpu |"
        done
    done
    say ""
}

# --- the pair used by the throughput tables --------------------------------
AP=$PORT
EP=$((PORT + 100))
AW=$W
config "$TMP/agent.conf" "$AP" "$W" "$(static_routes 1 10 10)"
start_agent "$TMP/agent.conf"
start_echo "$EP" "$W"
wait_ready "$AP" "$W" 1 || exit 1
wait_ready "$EP" "$W" 1 || exit 1

if [ "$SHM_ONLY" = 1 ]; then
    shm_table
    exit 0
fi

if [ "$CHECK" = 1 ]; then
    pair 2 blocking
    R=$(ratio "$A_QPS" "$E_QPS")
    say "bench check: blocking, 2 threads, median of $REPS x ${DUR}s: agent $(fmt0 "$A_QPS")/s, udp-echo $(fmt0 "$E_QPS")/s, ratio $R (minimum $MIN_RATIO), agent errors $A_ERR; CPU per get_host: agent $A_CPUR us, echo $E_CPUR us"
    if ! awk -v r="$R" -v m="$MIN_RATIO" 'BEGIN { exit !(r == r + 0 && r >= m) }'; then
        say "bench check: FAILED (agent/echo $R < $MIN_RATIO)"
        exit 1
    fi
    # The fast path: liblars pairs through shared memory against the same
    # calls over UDP, 1 thread (about 270x here; a broken refill or wake-up
    # falls to UDP speed or below).
    s=$(bench "check-shm" --port "$AP" --workers "$AW" --threads 1 --transport shm --duration "$DUR" --pid "$AGENT_PID")
    u=$(bench "check-udp" --port "$AP" --workers "$AW" --threads 1 --transport udp --duration "$DUR" --pid "$AGENT_PID")
    SR=$(ratio "$(field "$s" pairs_per_s)" "$(field "$u" pairs_per_s)")
    say "bench check: liblars pairs, 1 thread, ${DUR}s: shared memory $(fmt0 "$(field "$s" pairs_per_s)")/s (p99 $(field "$s" p99_us) us), UDP $(fmt0 "$(field "$u" pairs_per_s)")/s, ratio $SR (minimum $MIN_SHM_RATIO)"
    if ! awk -v r="$SR" -v m="$MIN_SHM_RATIO" 'BEGIN { exit !(r == r + 0 && r >= m) }'; then
        say "bench check: FAILED (shared memory/UDP $SR < $MIN_SHM_RATIO)"
        exit 1
    fi
    say "bench check: ok"
    exit 0
fi

say "# Lars benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say ""
say "$(nproc) CPUs ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "agent: $W workers, dns_static (10 modules x 10 nodes), lb_lars, report_log to /dev/null; udp-echo: $W threads"
say "each cell: median of $REPS runs of ${DUR}s (+${WARMUP}s warm-up), agent and echo alternating; 1 module; get_host + report"
say ""
say "## Throughput (get_host answers/s) and latency (us)"
say ""
say "| threads | mode | agent QPS | echo QPS | agent/echo | agent p50 | agent p99 | echo p50 | echo p99 | agent CPU us/req | echo CPU us/req | agent errors |"
say "|---|---|---|---|---|---|---|---|---|---|---|---|"
PIPE_T2=0
for mode in blocking pipelined; do
    for t in 1 2 4 8; do
        extra=()
        [ "$mode" = pipelined ] && extra=(--depth 16)
        pair "$t" "$mode" "${extra[@]}"
        [ "$mode" = pipelined ] && [ "$t" = 2 ] && PIPE_T2=$A_QPS
        say "| $t | $mode$([ "$mode" = pipelined ] && echo ' (depth 16)') | $(fmt0 "$A_QPS") | $(fmt0 "$E_QPS") | $(ratio "$A_QPS" "$E_QPS") | $A_P50 | $A_P99 | $E_P50 | $E_P99 | $A_CPUR | $E_CPUR | $A_ERR |"
    done
done
say ""

# --- latency at about half load ----------------------------------------------
RATE=$(awk -v q="$PIPE_T2" 'BEGIN { printf "%.0f", q / 2 }')
say "## Latency at ~50% load"
say ""
pair 2 pipelined --depth 16 --rate "$RATE"
say "pipelined, 2 threads, open loop at $RATE get_host/s (half the agent's pipelined 2-thread maximum):"
say ""
say "| target | QPS | p50 us | p99 us |"
say "|---|---|---|---|"
say "| agent | $(fmt0 "$A_QPS") | $A_P50 | $A_P99 |"
say "| echo | $(fmt0 "$E_QPS") | $E_P50 | $E_P99 |"
say ""
shm_table
stop_pid "$AGENT_PID"
stop_pid "$ECHO_PID"

# --- one agent core ---------------------------------------------------------
say "## Pipelined, agent on one core"
say ""
if [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
    AP=$((PORT + 200))
    EP=$((PORT + 300))
    AW=1
    config "$TMP/agent1.conf" "$AP" 1 "$(static_routes 1 10 10)"
    start_agent "$TMP/agent1.conf" 0
    start_echo "$EP" 1 0
    wait_ready "$AP" 1 1 || exit 1
    wait_ready "$EP" 1 1 || exit 1
    say "workers = 1, agent and udp-echo pinned to CPU 0 (taskset), lars-bench to CPU 1, 1 thread, depth 64"
    say ""
    say "| reports | agent QPS | echo QPS | agent/echo | agent p50 | agent p99 | agent CPU us/req | echo CPU us/req |"
    say "|---|---|---|---|---|---|---|---|"
    for rep in --report --no-report; do
        : >"$TMP/a" && : >"$TMP/e"
        for r in $(seq 1 "$REPS"); do
            a=$(taskset -c 1 "$BIN/lars-bench" --label "agent-1core$rep" --json --max-time 60 --port "$AP" --workers 1 --threads 1 --mode pipelined --depth 64 $rep --duration "$DUR" --warmup "$WARMUP" --pid "$AGENT_PID" 2>>"$TMP/bench.log")
            e=$(taskset -c 1 "$BIN/lars-bench" --label "echo-1core$rep" --json --max-time 60 --port "$EP" --workers 1 --threads 1 --mode pipelined --depth 64 $rep --duration "$DUR" --warmup "$WARMUP" --pid "$ECHO_PID" 2>>"$TMP/bench.log")
            printf '%s\n%s\n' "$a" "$e" >>"$RESULTS"
            printf '%s\n' "$a" >>"$TMP/a"
            printf '%s\n' "$e" >>"$TMP/e"
        done
        A_QPS=$(while read -r l; do field "$l" qps; done <"$TMP/a" | median)
        E_QPS=$(while read -r l; do field "$l" qps; done <"$TMP/e" | median)
        A_P50=$(while read -r l; do field "$l" p50_us; done <"$TMP/a" | median)
        A_P99=$(while read -r l; do field "$l" p99_us; done <"$TMP/a" | median)
        say "| ${rep#--} | $(fmt0 "$A_QPS") | $(fmt0 "$E_QPS") | $(ratio "$A_QPS" "$E_QPS") | $A_P50 | $A_P99 | $(cpur "$TMP/a") | $(cpur "$TMP/e") |"
    done
    stop_pid "$AGENT_PID"
    stop_pid "$ECHO_PID"
else
    say "(skipped: needs 2 CPUs and taskset)"
fi
say ""

# --- scale ------------------------------------------------------------------
# Agent A (statistics flush off: report_interval 86400, route refresh off:
# update_timeout 3600): RSS after every module was learned, get_host latency
# over random modules (1 blocking thread: a clean round trip), and the CPU
# of an idle second (the 1 s worker tick over every module).
# Agent B (report_interval 1 s): idle CPU per second minus A's = the cost of
# one statistics flush of every module; the largest get_host latency of a
# light load (2000/s) meanwhile shows how long a flush stalls a worker.
say "## Scale: modules x 10 nodes (dns_bench synthetic routes, $W workers)"
say ""
say "| modules | learn all s | agent RSS MB | get_host p50 us | p99 us | idle tick CPU ms/s | flush CPU ms | max latency during flushes us |"
say "|---|---|---|---|---|---|---|---|"
SP=$((PORT + 400))
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for k in 1 1000 100000; do
    config "$TMP/scale.conf" "$SP" "$W" "plugin = \"dns_bench\"; modules = $k; nodes = 10;" 86400 3600
    start_agent "$TMP/scale.conf"
    wait_ready "$SP" "$W" 1 || exit 1
    # every module learned once (each asked until it answers RET_SUCC)
    j=$(bench "warm-$k" --port "$SP" --workers "$W" --mode warm --modules "$k" --threads 2 --depth 64)
    warm_s=$(field "$j" elapsed_s)
    ready=$(field "$j" ready)
    rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$AGENT_PID/status")
    : >"$TMP/a"
    for r in $(seq 1 "$REPS"); do
        bench "scale-$k" --port "$SP" --workers "$W" --threads 1 --mode blocking --modules "$k" --duration "$DUR" --warmup "$WARMUP" --pid "$AGENT_PID" >>"$TMP/a"
    done
    P50=$(while read -r l; do field "$l" p50_us; done <"$TMP/a" | median)
    P99=$(while read -r l; do field "$l" p99_us; done <"$TMP/a" | median)
    [ "$k" = 1 ] && P50_1=$P50
    # agent CPU ms per get_host + report, to take the light load out of the flush figure
    per_req=$(while read -r l; do awk -v c="$(field "$l" agent_cpu_s)" -v n="$(field "$l" answers)" 'BEGIN { if (n > 0) print c * 1000 / n; else print 0 }'; done <"$TMP/a" | median)
    c0=$(cpu_ticks "$AGENT_PID")
    sleep 2
    c1=$(cpu_ticks "$AGENT_PID")
    idle=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) * 1000 / hz / 2 }')
    stop_pid "$AGENT_PID"

    config "$TMP/scale.conf" "$SP" "$W" "plugin = \"dns_bench\"; modules = $k; nodes = 10;" 1 3600
    start_agent "$TMP/scale.conf"
    wait_ready "$SP" "$W" 1 || exit 1
    bench "warm-$k-flush" --port "$SP" --workers "$W" --mode warm --modules "$k" --threads 2 --depth 64 >/dev/null
    c0=$(cpu_ticks "$AGENT_PID")
    j=$(bench "flush-$k" --port "$SP" --workers "$W" --threads 1 --mode pipelined --depth 4 --rate 2000 --modules "$k" --duration 3)
    c1=$(cpu_ticks "$AGENT_PID")
    flush=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v idle="$idle" -v pr="$per_req" 'BEGIN { f = (b - a) * 1000 / hz / 3 - idle - 2000 * pr; printf "%.0f", f < 0 ? 0 : f }')
    stall=$(field "$j" max_us)
    stop_pid "$AGENT_PID"
    note=""
    [ "$ready" != "$k" ] && note=" (only $ready learned)"
    say "| $k | $warm_s$note | $rss | $P50 | $P99 | $idle | $flush | $stall |"
done
say ""
say "get_host p50 at 100k modules / at 1 module: $(ratio "$P50" "$P50_1")"
say "(flush CPU: agent CPU per second with report_interval = 1 s under 2000 get_host/s, minus the idle tick CPU and the requests' own CPU)"
say ""

# --- route of 10k nodes -----------------------------------------------------
say "## Route update of 10k nodes (dns_static)"
say ""
RP=$((PORT + 500))
# one small module plus three modules of 10000 nodes (modids 101..103)
{
    printf 'plugin = "dns_static"; routes = (\n{ modid = 1; cmdid = 1; hosts = ("127.0.0.1:9001"); },\n'
    static_routes 101 3 10000 | sed '1d;$d'
    printf ');'
} >"$TMP/routes10k"
config "$TMP/route.conf" "$RP" "$W" "$(cat "$TMP/routes10k")"
start_agent "$TMP/route.conf"
wait_ready "$RP" "$W" 1 || exit 1
say "time from the first get_host (RET_NOEXIST, starts the pull) to the first RET_SUCC, asking every 100 us:"
say ""
say "| module | nodes | time to ready ms |"
say "|---|---|---|"
for m in 101 102 103; do
    j=$(bench "route10k-$m" --port "$RP" --workers "$W" --mode warm --modid "$m" --modules 1 --retry-us 100)
    say "| $m | 10000 | $(awk -v u="$(field "$j" p50_us)" 'BEGIN { printf "%.2f", u / 1000 }') |"
done
stop_pid "$AGENT_PID"
say ""
say "total time $(($(date +%s) - START)) s; raw results: $RESULTS"
