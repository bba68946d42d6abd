#!/bin/sh
# policy_out_of_tree.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]: what
# docs/writing-a-policy.md tells a user, from installed files only. Installs
# the build into a fresh prefix, then runs the page's two `cc` lines exactly
# as written (taken from the page, so the page cannot rot):
#   1. the plugin line builds a policy that uses libm (tests/install/lb_decay.c),
#      and the installed agent loads it by name through a plugin_dir list;
#   2. the test line builds the example policy's unit tests
#      (contrib/example-policy/test_lb_failover.c) against the installed
#      lars/policy_test.h and liblars-policy-test, and they pass.
# EXTRA_CFLAGS: what a sanitized build's archive needs to link
# (-fsanitize=...); empty for a release build.
set -eu
build=$1
src=$2
extra=${3:-}
doc="$src/docs/writing-a-policy.md"
work=$(mktemp -d /tmp/lars-policy.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
# lib/pkgconfig, or lib/<multiarch>/pkgconfig for a /usr build.
PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name lars-plugin.pc | head -n 1)")
export PKG_CONFIG_PATH

plugin_line=$(grep -m1 '^cc -shared' "$doc")
test_line=$(grep -m1 '^cc test_my_policy' "$doc")
[ -n "$plugin_line" ] || { echo "no 'cc -shared' line in $doc"; exit 1; }
[ -n "$test_line" ] || { echo "no 'cc test_my_policy' line in $doc"; exit 1; }

# The shipped plugin directory, as documented.
plugindir=$(pkg-config --variable=plugindir lars-plugin)
[ -f "$plugindir/lb_lars.so" ] || { echo "no lb_lars.so in plugindir $plugindir"; exit 1; }

# 1. A policy using libm: the documented line builds it; the agent loads it.
mkdir "$work/policy" "$work/policy/mine"
cp "$src/tests/install/lb_decay.c" "$work/policy/my_policy.c"
(cd "$work/policy" && echo "+ $plugin_line" && eval "$plugin_line")
mv "$work/policy/my_policy.so" "$work/policy/mine/"
cat >"$work/policy/agent.conf" <<CONF
agent: { plugin_dir = ( "mine", "$plugindir" ); cache_dir = ""; };
policy: { plugin = "my_policy"; half_life = 2.5; };
dns: { plugin = "dns_static"; routes = ( { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001" ); } ); };
reporter: { plugin = "report_log"; path = "-"; };
CONF
env -u LD_LIBRARY_PATH "$prefix/bin/lars-agent" -t -c "$work/policy/agent.conf"

# 2. The example's unit tests through the documented test line.
mkdir "$work/test"
cp "$src/contrib/example-policy/lb_failover.c" "$work/test/my_policy.c"
cp "$src/contrib/example-policy/test_lb_failover.c" "$work/test/test_my_policy.c"
(cd "$work/test" && echo "+ $test_line" && CC="cc $extra" eval "\${CC} ${test_line#cc }")
echo "policy_out_of_tree: OK"
