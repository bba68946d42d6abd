#!/bin/sh
# sample_keys.sh AGENT SAMPLE_CONF README: every key lars-agent accepts in
# its own sections (`lars-agent -T agent`) and in the plugin sections of the
# sample config (lb_lars, dns_static, report_log) is documented in the
# sample config (set, or commented out as `# key = ...`), and every key of
# the agent's own sections is named in README (`key`). Prints what is
# missing; exit 1 when anything is.
set -eu
agent=$1 sample=$2 readme=$3
missing=0

# The first column of every settings table lars-agent -T prints.
keys_of() {
    # Not a pipe from the agent: its failure must fail the test, not give
    # an empty list that passes.
    table=$("$agent" -T "$1") || { echo "lars-agent -T $1 failed" >&2; exit 1; }
    printf '%s\n' "$table" | awk '
        /^key[ \t]/ { in_table = 1; next }
        /^[ \t]*$/  { in_table = 0; next }
        in_table    { print $1 }'
}

check() { # check WHAT KEY FILE PATTERN
    if ! grep -Eq "$4" "$3"; then
        echo "$1: key '$2' is not documented in $3"
        missing=1
    fi
}

agent_keys=$(keys_of agent)
[ -n "$agent_keys" ] || { echo "lars-agent -T agent listed no keys" >&2; exit 1; }
for key in $(printf '%s\n' "$agent_keys" | sort -u); do
    check "lars-agent -T agent" "$key" "$sample" "(^|[#{ \t])$key[ \t]*="
    check "lars-agent -T agent" "$key" "$readme" "\`$key\`"
done
for plugin in lb_lars dns_static report_log; do
    plugin_keys=$(keys_of "$plugin")
    for key in $(printf '%s\n' "$plugin_keys" | sort -u); do
        check "lars-agent -T $plugin" "$key" "$sample" "(^|[#{ \t])$key[ \t]*="
    done
done
exit $missing
