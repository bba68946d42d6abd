#!/bin/sh
# packages.sh [BUILD_DIR]: the Debian packages, end to end, on this machine.
#
# Builds BUILD_DIR (default build-pkg: configured here as a Release build
# with -DCMAKE_INSTALL_PREFIX=/usr when it has no cache yet), runs
# `cpack -G DEB`, installs lars-agent, lars-dns, lars-reporter and
# liblars-dev with dpkg -i, checks what a user of the packages relies on,
# then purges them and checks that nothing is left: the machine ends as it
# started (the lars user too, when it did not exist before). Needs root for
# dpkg (sudo is used when not root); CI runs it on a throwaway machine,
# contrib/dev.sh test runs it after the release build. LARS_PKG_KEEP=1
# leaves the packages installed after a failure, to look around.
#
# It refuses to run when a Lars package or one of the dirs the packages own
# (/etc/lars, /var/lib/lars, ...) is already there: purge would delete them.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-pkg}
jobs=${LARS_JOBS:-1}
started=$(date +%s)

packages="lars-agent lars-dns lars-reporter liblars-dev"
state_dirs="/etc/lars /var/lib/lars /var/cache/lars-agent /var/log/lars"
units="lars-agent.service lars-dns.service lars-reporter.service"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
fail() {
    echo "packages.sh: FAIL: $*" >&2
    exit 1
}
say() {
    printf 'packages.sh [%ss]: %s\n' "$(($(date +%s) - started))" "$*"
}

# ---- the machine before -------------------------------------------------
for p in $packages; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    case "$status" in
    "" | not-installed) ;;
    *) fail "$p is on this machine ($status): this check installs and purges its own build; remove it first" ;;
    esac
done
for d in $state_dirs; do
    [ ! -e "$d" ] || fail "$d exists: purging the packages would delete it; move it away first"
done
user_before=no
group_before=no
getent passwd lars >/dev/null && user_before=yes
getent group lars >/dev/null && group_before=yes

tmp=$(mktemp -d /tmp/lars-packages.XXXXXX)
chmod 0755 "$tmp"
installed=no
pids="" # what this script started, stopped by cleanup
extra_plugin=""

# stop_all: SIGTERM to what this script started, then wait (5 s at most)
# until they are gone: deluser refuses a user with processes.
stop_all() {
    for pid in $pids; do
        as_root kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
            [ -d "/proc/$pid" ] || break
            sleep 0.2
        done
    done
    pids=""
}

cleanup() {
    status=$?
    stop_all
    if [ "$status" -ne 0 ] && [ "$installed" = yes ] && [ "${LARS_PKG_KEEP:-0}" = 1 ]; then
        echo "packages.sh: LARS_PKG_KEEP=1: the packages stay installed; purge them with" >&2
        echo "  ${extra_plugin:+rm $extra_plugin; }dpkg --purge $packages" >&2
    elif [ "$installed" = yes ]; then
        [ -z "$extra_plugin" ] || as_root rm -f "$extra_plugin"
        # shellcheck disable=SC2086 # one argument per package
        as_root dpkg --purge $packages >/dev/null 2>&1 || true
        if [ "$user_before" = no ] && getent passwd lars >/dev/null; then
            as_root deluser --system --quiet lars >/dev/null 2>&1 || true
        fi
        if [ "$group_before" = no ] && getent group lars >/dev/null; then
            as_root delgroup --system --quiet lars >/dev/null 2>&1 || true
        fi
    fi
    as_root rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build the packages -------------------------------------------------
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
        -DLARS_BUILD_TESTS=OFF >"$tmp/configure.log" || { cat "$tmp/configure.log"; fail "configure"; }
fi
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ "$prefix" = /usr ] ||
    fail "$build is configured with CMAKE_INSTALL_PREFIX=$prefix; packages need /usr (cmake -DCMAKE_INSTALL_PREFIX=/usr $build)"
say "build $build (-j$jobs)"
cmake --build "$build" -j"$jobs" >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; fail "build"; }
rm -rf "$build/packages"
say "cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$build/packages" >"$tmp/cpack.log" 2>&1 ||
    { cat "$tmp/cpack.log"; fail "cpack"; }
debs=""
for p in $packages; do
    deb=$(ls "$build/packages/${p}_"*.deb 2>/dev/null || true)
    [ -f "$deb" ] || fail "cpack made no $p package (in $build/packages)"
    debs="$debs $deb"
done

# Maintainer scripts: POSIX sh (dash runs them), and shellcheck when present.
for script in "$build"/debian/*/postinst "$build"/debian/*/prerm "$build"/debian/*/postrm; do
    dash -n "$script" || fail "$script: syntax"
done
if command -v shellcheck >/dev/null; then
    shellcheck -s sh "$build"/debian/*/postinst "$build"/debian/*/prerm "$build"/debian/*/postrm ||
        fail "shellcheck of the maintainer scripts"
fi

# ---- install ------------------------------------------------------------
say "dpkg -i$(for d in $debs; do printf ' %s' "${d##*/}"; done)"
installed=yes
# shellcheck disable=SC2086 # one argument per package
as_root dpkg -i $debs >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i (dependencies: apt-get install -f)"; }

# What each package holds: what users and the units name.
holds() { # holds PACKAGE FILE...
    pkg=$1
    shift
    dpkg -L "$pkg" >"$tmp/list"
    for f in "$@"; do
        grep -qx "$f" "$tmp/list" || fail "$pkg does not hold $f"
    done
}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
libdir=/usr/lib/$multiarch
holds lars-agent /usr/bin/lars-agent /usr/bin/lars /usr/bin/lars-bench /etc/lars/agent.conf \
    /lib/systemd/system/lars-agent.service "$libdir/liblars.so.1" "$libdir/liblars.so.0" \
    "$libdir/lars/plugins/lb_lars.so" "$libdir/lars/plugins/dns_static.so" \
    "$libdir/lars/plugins/report_log.so" "$libdir/lars/plugins/dns_lars.so" \
    "$libdir/lars/plugins/report_lars.so"
holds lars-dns /usr/bin/lars-dns /usr/bin/lars-admin /etc/lars/dns.conf /lib/systemd/system/lars-dns.service
holds lars-reporter /usr/bin/lars-reporter /etc/lars/reporter.conf \
    /lib/systemd/system/lars-reporter.service
holds liblars-dev /usr/include/lars/client.h /usr/include/lars/plugin.h "$libdir/liblars.so" \
    "$libdir/pkgconfig/lars.pc" "$libdir/pkgconfig/lars-plugin.pc"

# ---- the user, the dirs, the conffiles -----------------------------------
say "lars user, state dirs, conffiles"
getent passwd lars >/dev/null || fail "no lars user after install"
for d in /var/lib/lars /var/cache/lars-agent /var/log/lars; do
    [ -d "$d" ] || fail "$d missing after install"
    owner=$(stat -c '%U:%G %a' "$d")
    [ "$owner" = "lars:lars 750" ] || fail "$d is $owner, not lars:lars 750"
done
for pair in lars-agent:agent lars-dns:dns lars-reporter:reporter; do
    pkg=${pair%%:*}
    conf=/etc/lars/${pair#*:}.conf
    dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q "^ $conf " || fail "$conf is not a conffile of $pkg"
done

# Installing again (what an upgrade runs: prerm upgrade, postinst configure
# OLD-VERSION) must succeed with everything in place and keep an admin's
# edit of a conffile.
say "dpkg -i again over the installed packages (upgrade path, conffile edit kept)"
echo "# edited by packages.sh" | as_root tee -a /etc/lars/agent.conf >/dev/null
# shellcheck disable=SC2086 # one argument per package
as_root dpkg -i --force-confold $debs >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i over the installed packages"; }
grep -q "^# edited by packages.sh$" /etc/lars/agent.conf || fail "reinstalling lost an edit of /etc/lars/agent.conf"

# ---- the installed configs, as the units run them (User=lars) ------------
say "lars-agent/-dns/-reporter -t on /etc/lars/*.conf (as root and as lars)"
as_root /usr/bin/lars-agent -t -c /etc/lars/agent.conf >"$tmp/t.log" 2>&1 ||
    { cat "$tmp/t.log"; fail "lars-agent -t -c /etc/lars/agent.conf"; }
for prog in agent dns reporter; do
    as_root runuser -u lars -- "/usr/bin/lars-$prog" -t -c "/etc/lars/$prog.conf" >"$tmp/t.log" 2>&1 ||
        { cat "$tmp/t.log"; fail "lars-$prog -t -c /etc/lars/$prog.conf (as user lars)"; }
done

# ---- the units ------------------------------------------------------------
say "systemd-analyze verify $units"
# shellcheck disable=SC2086 # one argument per unit
( cd /lib/systemd/system && as_root systemd-analyze verify $units ) >"$tmp/verify.log" 2>&1 ||
    { cat "$tmp/verify.log"; fail "systemd-analyze verify"; }
# verify also warns without failing; any word about our units is a finding.
if grep -i "lars" "$tmp/verify.log"; then
    fail "systemd-analyze verify complained about the units"
fi
for u in $units; do
    prog=${u%.service}
    grep -q "^ExecStart=/usr/bin/$prog -f -c /etc/lars/${prog#lars-}.conf$" "/lib/systemd/system/$u" ||
        fail "$u: ExecStart does not run /usr/bin/$prog on /etc/lars/${prog#lars-}.conf"
done

# ---- liblars-dev: a client and an out-of-tree policy -----------------------
say "a C client with pkg-config lars, a policy with pkg-config lars-plugin, its tests with lars-policy-test"
cat >"$tmp/client.c" <<'EOF'
#include <lars/client.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    struct lars_client_options opts = {.base_port = (uint16_t)atoi(argv[1])};
    struct lars_client *c = lars_client_create(&opts);
    struct lars_host host;
    int rc = c ? lars_get_host(c, atoi(argv[2]), atoi(argv[3]), &host) : -1;
    if (rc != 0) {
        fprintf(stderr, "get_host: %s\n", c ? lars_strerror(rc) : "no client");
        return 1;
    }
    printf("%s:%u\n", host.ip_str, (unsigned)host.port);
    lars_client_destroy(c);
    return argc == 4 ? 0 : 2;
}
EOF
# shellcheck disable=SC2046 # pkg-config prints several words
inc=$(pkg-config --cflags-only-I lars | sed 's/^-I//; s/ *$//')
[ "$(realpath -m "$inc")" = /usr/include ] || fail "pkg-config --cflags lars says -I$inc, not /usr/include"
# shellcheck disable=SC2046 # pkg-config prints several words
cc -Wall -Werror -o "$tmp/client" "$tmp/client.c" $(pkg-config --cflags --libs lars) ||
    fail "the client does not build with pkg-config --cflags --libs lars"
plugindir=$(realpath -m "$(pkg-config --variable=plugindir lars-plugin)")
[ "$plugindir" = "$libdir/lars/plugins" ] ||
    fail "pkg-config --variable=plugindir lars-plugin is $plugindir, not $libdir/lars/plugins"
sed 's/"lb_failover"/"pkgcheck_failover"/' "$src/contrib/example-policy/lb_failover.c" >"$tmp/pkgcheck_failover.c"
extra_plugin=$plugindir/pkgcheck_failover.so
# shellcheck disable=SC2046
cc -shared -fPIC -O2 -fvisibility=hidden $(pkg-config --cflags lars-plugin) \
    "$tmp/pkgcheck_failover.c" -o "$tmp/pkgcheck_failover.so" ||
    fail "the example policy does not build with pkg-config --cflags lars-plugin"
as_root install -m 0644 "$tmp/pkgcheck_failover.so" "$extra_plugin"
# The policy's unit tests against liblars-dev's policy test kit (lars/policy_test.h).
cp "$src/contrib/example-policy/test_lb_failover.c" "$tmp/test_lb_failover.c"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/test_lb_failover" "$tmp/test_lb_failover.c" \
    "$src/contrib/example-policy/lb_failover.c" $(pkg-config --cflags --libs lars-policy-test) ||
    fail "the example's unit tests do not build with pkg-config --cflags --libs lars-policy-test"
"$tmp/test_lb_failover" >/dev/null || fail "the example's unit tests fail against the packaged kit"

# ---- the packaged agent serves ---------------------------------------------
# /etc/lars/agent.conf on free ports (UDP base..base+2, stats base+3), run
# as lars like the unit, with module 2/1 on the policy just built: it must
# come from the default plugin dir.
# Free: no socket at all on it (listening or not). Candidates come from
# below the kernel's ephemeral range, where outgoing connections take ports.
port_free() { # port_free PROTO PORT
    [ -z "$(ss -Han"$1" "sport = :$2" 2>/dev/null)" ]
}
base=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    try=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 12000))
    if port_free u "$try" && port_free u $((try + 1)) && port_free u $((try + 2)) &&
        port_free t $((try + 3)) && port_free t $((try + 4)) && port_free t $((try + 5)); then
        base=$try
        break
    fi
done
[ -n "$base" ] || fail "no free ports"
sed -e "s/udp_base_port = [0-9]*;/udp_base_port = $base;/" \
    -e "s/stats_listen = \"[^\"]*\";/stats_listen = \"127.0.0.1:$((base + 3))\";/" \
    -e "s|# log_file = \"[^\"]*\";|log_file = \"$tmp/agent.log\";|" \
    -e 's/^policies = ( /policies = ( { modid = 2; cmdid = 1; plugin = "pkgcheck_failover"; }, /' \
    /etc/lars/agent.conf >"$tmp/agent.conf"
grep -q pkgcheck_failover "$tmp/agent.conf" || fail "/etc/lars/agent.conf has no 'policies = ( ' line to extend"
grep -q "udp_base_port = $base;" "$tmp/agent.conf" || fail "/etc/lars/agent.conf has no udp_base_port line"
as_root runuser -u lars -- /usr/bin/lars-agent -t -c "$tmp/agent.conf" >"$tmp/t.log" 2>&1 ||
    { cat "$tmp/t.log"; fail "the packaged agent does not load $extra_plugin (lars-agent -t)"; }
as_root chown lars "$tmp"
# Waits until serving, then daemonizes (docs: lars-agent without -f).
as_root runuser -u lars -- /usr/bin/lars-agent -c "$tmp/agent.conf" -p "$tmp/agent.pid" 2>"$tmp/start.log" ||
    { cat "$tmp/start.log" "$tmp/agent.log" 2>/dev/null; fail "the packaged lars-agent does not start"; }
pids="$pids $(cat "$tmp/agent.pid")"
# The first get-host of a module is "no such module" while the agent pulls
# its route (README, Asking the agent).
get_host() { # get_host MODID CMDID: prints a node within 2 s, else fails
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        /usr/bin/lars -p "$base" get-host "$1" "$2" 2>/dev/null && return 0
        sleep 0.2
    done
    cat "$tmp/agent.log"
    fail "lars get-host $1 $2: no node from the packaged agent"
}
node=$(get_host 1 1)
case $node in
127.0.0.1:900[123]*) ;;
*) fail "lars get-host 1 1 answered '$node', not a node of /etc/lars/agent.conf" ;;
esac
get_host 2 1 >/dev/null
node=$("$tmp/client" "$base" 2 1) || fail "the C client built with pkg-config lars got no node"
[ "$node" = 127.0.0.1:9101 ] || fail "the C client got '$node' for 2/1, not 127.0.0.1:9101"
# Module 2/1 runs on the policy from the plugin dir: /metrics counts per
# policy plugin (curl is optional; -t above already loaded it).
if command -v curl >/dev/null; then
    curl -fsS "http://127.0.0.1:$((base + 3))/metrics" | grep -q 'plugin="pkgcheck_failover"' ||
        fail "/metrics of the packaged agent names no policy pkgcheck_failover"
fi
# The route cache: /var/cache/lars-agent must be writable by lars (the
# writer flushes within a second; give it a few).
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -z "$(ls -A /var/cache/lars-agent)" ] || break
    sleep 0.5
done
[ -n "$(ls -A /var/cache/lars-agent)" ] ||
    { cat "$tmp/agent.log"; fail "the agent (user lars) wrote no route cache in /var/cache/lars-agent"; }

# ---- the packaged services, on their installed configs --------------------
# lars-dns (TCP base+4) and lars-reporter (base+5) as lars, on
# /etc/lars/{dns,reporter}.conf with only the port moved: the SQLite
# database they name (/var/lib/lars/lars.db) must be theirs to create, and
# lars-admin (as lars) must change routes in it. -t does not open the store.
say "lars-dns, lars-reporter and lars-admin as lars on /etc/lars/{dns,reporter}.conf"
listening() { # listening PORT: within 5 s
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
        port_free t "$1" || return 0
        sleep 0.2
    done
    return 1
}
for pair in dns:$((base + 4)) reporter:$((base + 5)); do
    prog=${pair%%:*}
    port=${pair#*:}
    sed "s/^listen = \"127.0.0.1:[0-9]*\";/listen = \"127.0.0.1:$port\";/" "/etc/lars/$prog.conf" >"$tmp/$prog.conf"
    grep -q "^listen = \"127.0.0.1:$port\";" "$tmp/$prog.conf" || fail "/etc/lars/$prog.conf has no listen line"
    # sh writes its pid, then it becomes setpriv, then lars-$prog.
    # shellcheck disable=SC2016 # $$ and $1 are the inner shell's
    as_root sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$tmp/$prog.pid" \
        setpriv --reuid lars --regid lars --init-groups "/usr/bin/lars-$prog" -f -c "$tmp/$prog.conf" \
        >"$tmp/$prog.log" 2>&1 &
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -s "$tmp/$prog.pid" ] && break
        sleep 0.1
    done
    pids="$pids $(cat "$tmp/$prog.pid")"
    listening "$port" || { cat "$tmp/$prog.log"; fail "the packaged lars-$prog does not listen on its config"; }
done
as_root runuser -u lars -- /usr/bin/lars-admin -c /etc/lars/dns.conf route add 7 1 127.0.0.1:9701 >/dev/null ||
    fail "lars-admin -c /etc/lars/dns.conf (as lars) cannot add a route"
as_root runuser -u lars -- /usr/bin/lars-admin -c /etc/lars/reporter.conf route list | grep -q 127.0.0.1:9701 ||
    fail "lars-admin -c /etc/lars/reporter.conf does not see the route just added (one database)"
[ "$(stat -c %U /var/lib/lars/lars.db)" = lars ] || fail "/var/lib/lars/lars.db is not owned by lars"
stop_all

# ---- purge: nothing left ----------------------------------------------------
say "dpkg --purge $packages"
as_root rm -f "$extra_plugin"
extra_plugin=""
# shellcheck disable=SC2086
as_root dpkg --purge $packages >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg --purge"; }
installed=no
if [ "$user_before" = no ]; then
    # (deluser's words about cron and such are noise: the check below counts.)
    as_root deluser --system --quiet lars >/dev/null 2>&1 || true
    if getent group lars >/dev/null && [ "$group_before" = no ]; then
        as_root delgroup --system --quiet lars >/dev/null 2>&1 || true
    fi
fi
for p in $packages; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    case "$status" in
    "" | not-installed) ;;
    *) fail "$p is still $status after dpkg --purge" ;;
    esac
done
for f in $state_dirs /usr/bin/lars-agent /usr/bin/lars-dns "$libdir/lars" "$libdir/liblars.so.1" \
    /usr/include/lars /lib/systemd/system/lars-agent.service; do
    [ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done
if [ "$user_before" = no ] && getent passwd lars >/dev/null; then
    fail "the lars user is left"
fi
if [ "$group_before" = no ] && getent group lars >/dev/null; then
    fail "the lars group is left"
fi
say "OK ($(($(date +%s) - started))s)"
