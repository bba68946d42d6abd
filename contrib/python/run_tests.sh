#!/bin/sh
# Runs the Python client's tests against a real lars-agent of a build tree:
#   contrib/python/run_tests.sh BUILD_DIR
# BUILD_DIR holds bin/lars-agent and plugins/ (relative: to the repository
# root). Exit status: pytest's. Uses the system Python (Debian's pytest), not
# whatever `python3` a pyenv shim on PATH would pick.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $1 in
/*) build=$1 ;;
*) build=$root/$1 ;;
esac
cd "$root"
# No .pytest_cache in the source tree; -p no:cacheprovider keeps it clean.
LARS_BUILD_DIR=$build exec /usr/bin/python3 -m pytest -q -p no:cacheprovider contrib/python/tests
