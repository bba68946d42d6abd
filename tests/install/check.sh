#!/bin/sh
# check.sh BUILD_DIR: installs the build into a fresh prefix somewhere no
# loader looks (not /usr, not /usr/local) and runs the installed programs
# with no LD_LIBRARY_PATH: each must find the installed liblars through its
# RUNPATH ($ORIGIN/../lib...), and lars-bench must be installed.
set -eu
build=$1
prefix=$(mktemp -d /tmp/lars-prefix.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
fail=0
for prog in lars lars-agent lars-bench lars-dns lars-reporter lars-admin; do
    if [ ! -x "$prefix/bin/$prog" ]; then
        echo "not installed: bin/$prog"
        fail=1
    fi
done
runpath=$(readelf -d "$prefix/bin/lars" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
case $runpath in
'$ORIGIN/../lib'*) ;;
*) echo "bin/lars RUNPATH is '$runpath', not \$ORIGIN/../lib..."; fail=1 ;;
esac
# lars links liblars.so.1: it must start from the prefix (usage exits 2).
status=0
env -u LD_LIBRARY_PATH "$prefix/bin/lars" -h >/dev/null 2>&1 || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
    echo "installed bin/lars does not start (status $status):"
    env -u LD_LIBRARY_PATH "$prefix/bin/lars" -h 2>&1 | head -3
    fail=1
fi
exit $fail
