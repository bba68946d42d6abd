#!/usr/bin/env bash
# contrib/dev.sh - one entry point for a fresh Debian 12 machine.
#
#   contrib/dev.sh run     install what is missing, build, run lars-agent on
#                          etc/lars-agent.conf (static routes, log reporter)
#   contrib/dev.sh test    install what is missing, build with -Werror and
#                          ASan+UBSan, start a private MariaDB, run every test
#   contrib/dev.sh deps    only install the Debian packages
#   contrib/dev.sh build   only build (build/, release flags)
#
# Safe to run again: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config
          libevent-dev libprotobuf-c-dev protobuf-c-compiler libconfig-dev
          libcmocka-dev libsqlite3-dev libmariadb-dev mariadb-server
          clang libclang-rt-14-dev valgrind procps)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

deps() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing ${missing[*]}"
        as_root apt-get update -qq
        # The service is not started by the package here (tests start a
        # private server); policy-rc.d may refuse it, which is fine.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

build() { # build DIR [cmake args...]
    local dir=$1; shift
    cmake -S . -B "$dir" -DLARS_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
}

run_tests() {
    build build-test -DLARS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    local db_dir=""
    if [ -x contrib/ci/mariadb.sh ]; then
        db_dir=$(mktemp -d /tmp/lars-mariadb.XXXXXX)
        # Exports LARS_TEST_MYSQL_* so the MariaDB variants of the tests run.
        eval "$(contrib/ci/mariadb.sh start "$db_dir")"
        # CI must run the MariaDB variants, never skip them.
        export LARS_TEST_REQUIRE_MYSQL=1
        trap 'contrib/ci/mariadb.sh stop "'"$db_dir"'" >/dev/null 2>&1 || true' EXIT
    fi
    ctest --test-dir build-test --output-on-failure -j2 --timeout 300
}

case "${1:-}" in
    deps) deps ;;
    build) deps; build build ;;
    run) deps; build build; exec build/bin/lars-agent -f -c etc/lars-agent.conf ;;
    test) deps; run_tests ;;
    *) echo "usage: contrib/dev.sh run|test|deps|build" >&2; exit 2 ;;
esac
