#!/bin/sh
# fleet.sh BUILD_DIR [dns|reporter|all]: the central services at fleet
# scale, on loopback (docs/PERFORMANCE.md, "Central services at fleet
# scale"). Starts a private lars-dns / lars-reporter on SQLite (and on
# MariaDB when LARS_TEST_MYSQL_SOCKET is set, see contrib/ci/mariadb.sh)
# and drives it with lars-fleet:
#   dns:      CONNECTIONS agents subscribed to MODULES modules each; one
#             node added with lars-admin; push arrival p50/p99/max, memory
#             per connection, CPU; SLOW more agents that never read.
#   reporter: CONNECTIONS agents x MODULES batches (NODES nodes) per
#             INTERVAL s for ROUNDS rounds; then rows stored vs sent and the
#             reporter's counters of what it could not store.
# Sizes from the environment: CONNECTIONS (10000), MODULES (100), SLOW (100),
# NODES (10), ROUNDS (3), INTERVAL (10), POLL (lars-dns poll_interval, 1 s:
# a change waits up to one poll before lars-dns sees it), HISTORY (true:
# lars-reporter's per-minute history for the console, its default).
set -eu
build=$(cd "$1" && pwd)
what=${2:-all}
CONNECTIONS=${CONNECTIONS:-10000}
MODULES=${MODULES:-100}
SLOW=${SLOW:-100}
NODES=${NODES:-10}
ROUNDS=${ROUNDS:-3}
INTERVAL=${INTERVAL:-10}
POLL=${POLL:-1}
HISTORY=${HISTORY:-true}
work=$(mktemp -d /tmp/lars-fleet.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "fleet.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ulimit -n $(ulimit -n)"

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

store_group() { # BACKEND
    if [ "$1" = mysql ]; then
        echo "store = { backend = \"mysql\"; socket = \"$LARS_TEST_MYSQL_SOCKET\"; user = \"$LARS_TEST_MYSQL_USER\";"
        echo "          password = \"$LARS_TEST_MYSQL_PASSWORD\"; database = \"$mysql_db\"; timeout = 30; };"
    else
        echo "store = { backend = \"sqlite\"; path = \"$work/lars-$1.db\"; timeout = 30; };"
    fi
}

wait_metrics() { # PORT
    i=0
    until /usr/bin/python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$1/metrics', timeout=1)" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || { echo "no /metrics on port $1"; exit 1; }
        sleep 0.1
    done
}

metric() { # PORT NAME-PREFIX: the samples whose line starts with it
    /usr/bin/python3 -c "
import urllib.request
for l in urllib.request.urlopen('http://127.0.0.1:$1/metrics', timeout=5).read().decode().splitlines():
    if l.startswith('$2'): print('   ', l)"
}

run_dns() { # BACKEND
    port=$(free_port); stats=$(free_port)
    conf="$work/dns-$1.conf"
    cat >"$conf" <<CONF
listen = "127.0.0.1:$port"; stats_listen = "127.0.0.1:$stats"; threads = 2; poll_interval = $POLL;
max_connections = 40000; max_connections_per_peer = 40000; log_level = "warn";
$(store_group "$1")
CONF
    m=1
    while [ $m -le "$MODULES" ]; do
        "$build/bin/lars-admin" -c "$conf" route add $m 1 10.0.0.1:9000 >/dev/null
        m=$((m + 1))
    done
    "$build/bin/lars-dns" -f -c "$conf" 2>"$work/dns.err" &
    dns_pid=$!; pids="$pids $dns_pid"
    wait_metrics "$stats"
    echo "== lars-dns ($1, poll_interval $POLL s): $CONNECTIONS agents x $MODULES modules, $SLOW agents that never read"
    "$build/bin/lars-fleet" dns "127.0.0.1:$port" --connections "$CONNECTIONS" --slow "$SLOW" \
        --modules "$MODULES" --pid "$dns_pid" --timeout 60 \
        --change "'$build/bin/lars-admin' -c '$conf' route add 1 1 10.0.0.2:9000 >/dev/null" ||
        echo "lars-fleet dns: FAILED"
    metric "$stats" lars_dns_connections
    kill "$dns_pid"; wait "$dns_pid" 2>/dev/null || true
}

run_reporter() { # BACKEND
    port=$(free_port); stats=$(free_port)
    conf="$work/reporter-$1.conf"
    cat >"$conf" <<CONF
listen = "127.0.0.1:$port"; stats_listen = "127.0.0.1:$stats";
max_connections = 40000; max_connections_per_peer = 40000; log_level = "warn"; history = $HISTORY;
$(store_group "$1")
CONF
    "$build/bin/lars-reporter" -f -c "$conf" 2>"$work/reporter.err" &
    rep_pid=$!; pids="$pids $rep_pid"
    wait_metrics "$stats"
    echo "== lars-reporter ($1, history $HISTORY): $CONNECTIONS agents x $MODULES modules x $NODES nodes every $INTERVAL s, $ROUNDS rounds"
    "$build/bin/lars-fleet" reporter "127.0.0.1:$port" --connections "$CONNECTIONS" \
        --modules "$MODULES" --nodes "$NODES" --rounds "$ROUNDS" --interval "$INTERVAL" \
        --pid "$rep_pid" --timeout 120 || echo "lars-fleet reporter: FAILED"
    sleep 2 # the last rows reach the database
    metric "$stats" lars_reporter_
    kill "$rep_pid"; wait "$rep_pid" 2>/dev/null || true
}

backends="sqlite"
mysql_db="lars_test_fleet_$$"
mysql() {
    mariadb -S "$LARS_TEST_MYSQL_SOCKET" -u "$LARS_TEST_MYSQL_USER" -p"$LARS_TEST_MYSQL_PASSWORD" -e "$1"
}
if [ -n "${LARS_TEST_MYSQL_SOCKET:-}" ]; then
    backends="sqlite mysql"
    # A fresh database per service and run (mariadb.sh's user may create lars_test*).
    trap 'mysql "DROP DATABASE IF EXISTS $mysql_db" 2>/dev/null || true; cleanup' EXIT
fi
for b in $backends; do
    if [ "$b" = mysql ]; then
        mysql "DROP DATABASE IF EXISTS $mysql_db; CREATE DATABASE $mysql_db"
    fi
    case $what in
    dns) run_dns "$b" ;;
    reporter) run_reporter "$b" ;;
    *)
        run_dns "$b"
        [ "$b" = mysql ] && mysql "DROP DATABASE $mysql_db; CREATE DATABASE $mysql_db"
        run_reporter "$b"
        ;;
    esac
done
