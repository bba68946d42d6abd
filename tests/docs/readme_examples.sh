#!/bin/sh
# readme_examples.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]: README's business
# code in C, Python and Go, run as written there against a real lars-agent.
# Each block follows a line "<!-- example: FILE -->" in README.md; only the
# port changes (8888 -> a free one). Each program must print the node it
# got ("calling 127.0.0.1:900N") and its report must reach the agent (the
# report_log reporter prints the calls it was told about).
# EXTRA_CFLAGS: what a sanitized build's liblars needs (-fsanitize=...).
set -eu
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
extra=${3:-}
readme="$src/README.md"
work=$(mktemp -d /tmp/lars-readme.XXXXXX)
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Three free UDP ports in a row (the agent's three workers).
port=$(/usr/bin/python3 - <<'PY'
import socket
for base in range(20000 + (socket.gethostname().__hash__() % 1000) * 30, 60000, 3):
    socks = []
    try:
        for p in range(base, base + 3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", p))
            socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
)

# FILE's block out of README, with the port changed.
extract() {
    awk -v name="$1" '
        $0 == "<!-- example: " name " -->" { want = 1; next }
        want && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }
    ' "$readme" | sed "s/8888/$port/g" >"$2"
    [ -s "$2" ] || { echo "README.md has no block after <!-- example: $1 -->"; exit 1; }
}

cat >"$work/agent.conf" <<CONF
agent: { udp_base_port = $port; workers = 3; cache_dir = ""; log_level = "warn"; };
dns: { plugin = "dns_static";
       routes = ( { modid = 1; cmdid = 1;
                    hosts = ( "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003" ); } ); };
reporter: { plugin = "report_log"; report_interval = 0.2; path = "-"; };
CONF
"$build/bin/lars-agent" -f -c "$work/agent.conf" >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
i=0
until "$build/bin/lars" -p "$port" -w 3 get-route 1 1 >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "the agent did not answer in 10 s:"; cat "$work/agent.err"; exit 1
    fi
    sleep 0.1
done

fail=0
check() { # NAME OUTPUT-FILE
    if grep -q "^calling 127\.0\.0\.1:900[123]$" "$2"; then
        echo "$1: $(cat "$2")"
    else
        echo "$1 did not print 'calling 127.0.0.1:900N':"; cat "$2"; fail=1
    fi
}

# C, built against this build tree's liblars.
extract hello_lars.c "$work/hello_lars.c"
cc $extra "$work/hello_lars.c" -o "$work/hello_lars" -I"$src/include" -L"$build/lib" \
    -Wl,-rpath,"$build/lib" -llars
"$work/hello_lars" >"$work/c.out" 2>&1 || true
check C "$work/c.out"

# Python, from contrib/python.
extract hello_lars.py "$work/hello_lars.py"
PYTHONPATH="$src/contrib/python" /usr/bin/python3 "$work/hello_lars.py" >"$work/py.out" 2>&1 || true
check Python "$work/py.out"

# Go, a module of its own requiring contrib/go, offline.
mkdir "$work/hello"
extract hello_lars.go "$work/hello/hello_lars.go"
export GOPROXY=off GOFLAGS=-mod=mod
[ -n "${HOME:-}" ] && [ -w "${HOME:-/nonexistent}" ] || export GOCACHE="${TMPDIR:-/tmp}/lars-go-cache"
(cd "$work/hello" && go mod init hello >/dev/null 2>&1 &&
    go mod edit -require=lars@v0.0.0 -replace=lars="$src/contrib/go" &&
    go run . >"$work/go.out" 2>&1) || true
check Go "$work/go.out"

# Three successful calls of module 1/1 reported: report_log prints the
# module's current window every report_interval.
i=0
succ_reported() {
    grep '"modid":1,"cmdid":1,' "$work/agent.out" | tail -n 1 | grep -o '"succ":[0-9]*' |
        awk -F: '{ n += $2 } END { print n + 0 }'
}
until [ "$(succ_reported)" -ge 3 ]; do
    i=$((i + 1))
    if [ $i -gt 30 ]; then
        echo "the agent's reporter did not see 3 successful calls:"; cat "$work/agent.out"; fail=1; break
    fi
    sleep 0.1
done
exit $fail
