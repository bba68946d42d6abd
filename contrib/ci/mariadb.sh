#!/bin/sh
# mariadb.sh - a private, throw-away MariaDB server for the store tests.
#
#   eval "$(contrib/ci/mariadb.sh start [DIR])"   # prints export lines
#   contrib/ci/mariadb.sh stop DIR                # DIR = $LARS_TEST_MYSQL_DIR
#
# Everything (data, socket, pid, log) lives under DIR (a new mktemp -d
# directory by default), so no system state is touched: the system
# mariadb service, /etc/mysql and /var/lib/mysql are left alone (the
# server runs with --no-defaults). Works as root (CI containers) and as an
# ordinary user. Debian 12's mariadb-server provides mariadb-install-db and
# mariadbd. The server listens on 127.0.0.1 on a free port and on
# DIR/sock; database lars_test, user lars / password lars, who may also
# create databases named lars_test* (so test suites can isolate themselves).
#
# Exit status: 0 ready, 1 failure (the server log is copied to stderr).
set -eu

die() {
    echo "mariadb.sh: $*" >&2
    exit 1
}

find_bin() {
    for name in "$@"; do
        for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
            if [ -x "$d/$name" ]; then
                echo "$d/$name"
                return 0
            fi
        done
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        # Any socket on it, not only listeners: a connection's local port
        # (established or in TIME_WAIT) makes mariadbd's bind fail too.
        ss -Htan "sport = :$1" 2>/dev/null | grep -q .
    else
        # Without ss, a port is assumed free; mariadbd then fails loudly.
        return 1
    fi
}

free_port() {
    # Random ports (not a fixed one) so parallel CI jobs do not collide,
    # below Linux's ephemeral range (32768..60999) where the tests' own
    # connections take their local ports.
    i=0
    while [ $i -lt 50 ]; do
        p=$(awk -v s="$$$i" 'BEGIN { srand(s + systime()); print 20000 + int(rand() * 12000) }')
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
        i=$((i + 1))
    done
    return 1
}

client() {
    "$CLIENT" --no-defaults --protocol=socket --socket="$DIR/sock" -uroot "$@"
}

start() {
    DIR=${1:-}
    if [ -z "$DIR" ]; then
        DIR=$(mktemp -d "${TMPDIR:-/tmp}/lars-mariadb.XXXXXX")
    else
        mkdir -p "$DIR"
    fi
    DIR=$(cd "$DIR" && pwd)
    [ ! -e "$DIR/pid" ] || die "$DIR already holds a server (run: $0 stop $DIR)"

    INSTALL=$(find_bin mariadb-install-db mysql_install_db) ||
        die "mariadb-install-db not found (apt-get install mariadb-server)"
    SERVER=$(find_bin mariadbd mysqld) || die "mariadbd not found (apt-get install mariadb-server)"
    CLIENT=$(find_bin mariadb mysql) || die "mariadb client not found (apt-get install mariadb-client)"
    ADMIN=$(find_bin mariadb-admin mysqladmin) || die "mariadb-admin not found"

    user_opt=""
    if [ "$(id -u)" = 0 ]; then
        # mariadbd refuses to run as root unless told so; the data dir is
        # private, so running as root touches nothing else.
        user_opt="--user=root"
    fi

    # Root authenticates by (empty) password instead of the unix socket
    # plugin, so tests can connect as any OS user.
    if ! "$INSTALL" --no-defaults --datadir="$DIR/data" $user_opt \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$DIR/install.log" 2>&1; then
        cat "$DIR/install.log" >&2
        die "mariadb-install-db failed (log above, dir $DIR)"
    fi

    PORT=$(free_port) || die "no free TCP port found"
    # --skip-grant-tables is NOT used: the tests need real users.
    "$SERVER" --no-defaults --datadir="$DIR/data" --socket="$DIR/sock" \
        --pid-file="$DIR/pid" --port="$PORT" --bind-address=127.0.0.1 \
        --skip-networking=0 --log-error="$DIR/error.log" $user_opt \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=48M \
        --innodb-flush-log-at-trx-commit=1 --skip-name-resolve \
        --character-set-server=utf8mb4 >"$DIR/stdout.log" 2>&1 &
    echo $! >"$DIR/server.pid"

    i=0
    while ! "$ADMIN" --no-defaults --protocol=socket --socket="$DIR/sock" -uroot \
        ping >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
            cat "$DIR/error.log" >&2 2>/dev/null || true
            die "mariadbd did not become ready (log above, dir $DIR)"
        fi
        sleep 0.1
    done

    client <<'EOF' || die "creating database lars_test failed"
CREATE DATABASE IF NOT EXISTS lars_test CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'lars'@'localhost' IDENTIFIED BY 'lars';
CREATE USER IF NOT EXISTS 'lars'@'127.0.0.1' IDENTIFIED BY 'lars';
GRANT ALL PRIVILEGES ON `lars\_test%`.* TO 'lars'@'localhost';
GRANT ALL PRIVILEGES ON `lars\_test%`.* TO 'lars'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF

    cat <<EOF
export LARS_TEST_MYSQL_DIR='$DIR'
export LARS_TEST_MYSQL_HOST='127.0.0.1'
export LARS_TEST_MYSQL_PORT='$PORT'
export LARS_TEST_MYSQL_USER='lars'
export LARS_TEST_MYSQL_PASSWORD='lars'
export LARS_TEST_MYSQL_DATABASE='lars_test'
export LARS_TEST_MYSQL_SOCKET='$DIR/sock'
EOF
}

stop() {
    DIR=${1:-${LARS_TEST_MYSQL_DIR:-}}
    [ -n "$DIR" ] || die "usage: $0 stop DIR"
    [ -d "$DIR" ] || die "$DIR: no such directory"
    pid=""
    if [ -s "$DIR/pid" ]; then
        pid=$(cat "$DIR/pid")
    elif [ -s "$DIR/server.pid" ]; then
        pid=$(cat "$DIR/server.pid")
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1))
            if [ $i -gt 300 ]; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    fi
    # Only remove what this script created: a directory holding our data dir.
    if [ -d "$DIR/data" ]; then
        rm -rf "$DIR"
    fi
}

case "${1:-}" in
start)
    shift
    start "$@"
    ;;
stop)
    shift
    stop "$@"
    ;;
"")
    start
    ;;
*)
    echo "usage: $0 [start [DIR]] | stop DIR" >&2
    exit 2
    ;;
esac
