#!/usr/bin/env bash
# contrib/dev.sh - one entry point for a fresh Debian 12 machine.
#
#   contrib/dev.sh run     install what is missing, build, run lars-agent on
#                          etc/lars-agent.conf (static routes, log reporter)
#   contrib/dev.sh test    install what is missing, then: build with -Werror
#                          and ASan+UBSan, start a private MariaDB, run every
#                          test; clang-format check, cppcheck and clang-tidy; valgrind on agent integration
#                          tests; the performance regression check; the
#                          Debian packages (built, installed, checked,
#                          purged); each fuzzer for 60 s (LARS_FUZZ_SECONDS)
#   contrib/dev.sh deps    only install the Debian packages
#   contrib/dev.sh build   only build (build/, release flags)
#
# Safe to run again: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config
          libevent-dev libssl-dev openssl libprotobuf-c-dev protobuf-c-compiler libconfig-dev
          libcmocka-dev libsqlite3-dev libmariadb-dev mariadb-server
          clang clang-tidy clang-format libclang-rt-14-dev valgrind cppcheck procps git
          python3-pytest golang-go chromium)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
# tests/install/packages.sh: systemd-analyze verifies the packaged units, ss
# finds free ports, adduser is what the packages' postinst needs.
PACKAGES+=(systemd iproute2 adduser)

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
    cmake -S . -B "$dir" -DLARS_WERROR=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
}

step() { # step NAME: prints a banner with the time since the start
    printf '\n==== %s (%ds) ====\n' "$1" "$SECONDS"
}

run_tests() {
    step "style: clang-format --dry-run -Werror (.clang-format) over tracked C files"
    # tests/compat/plugin-1.*.h are verbatim copies of released headers.
    git ls-files '*.c' '*.h' | grep -v '^tests/compat/plugin-1\.' |
        xargs clang-format --dry-run -Werror

    step "build: -Werror, ASan+UBSan (build-test)"
    build build-test -DLARS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    local db_dir=""
    if [ -x contrib/ci/mariadb.sh ]; then
        step "private MariaDB"
        db_dir=$(mktemp -d /tmp/lars-mariadb.XXXXXX)
        # Exports LARS_TEST_MYSQL_* so the MariaDB variants of the tests run.
        eval "$(contrib/ci/mariadb.sh start "$db_dir")"
        # CI must run the MariaDB variants, never skip them.
        export LARS_TEST_REQUIRE_MYSQL=1
        trap 'contrib/ci/mariadb.sh stop "'"$db_dir"'" >/dev/null 2>&1 || true' EXIT
    fi
    step "unit, integration and system tests under ASan+UBSan"
    ctest --test-dir build-test --output-on-failure -j2 --timeout 300 -LE bench

    step "static analysis: cppcheck"
    cppcheck --quiet --enable=warning,portability,performance --inline-suppr --error-exitcode=1 \
        --suppress=missingIncludeSystem -I include -I core/common -I core/agent \
        -I build-test/proto -I contrib/store -I contrib/dns -I plugins/common \
        core plugins contrib tests

    step "static analysis: clang-tidy (.clang-tidy: analyzer + bugprone, warnings are errors)"
    # Fails on any diagnostic (and on clang-tidy failing); the filter only
    # drops clang-tidy's own "N warnings generated" chatter.
    git ls-files 'core/*.c' 'plugins/*.c' 'contrib/*.c' |
        xargs -P "$(nproc)" -n 4 clang-tidy -p build-test --quiet 2>&1 |
        { grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated|^Suppressed|^Use -header-filter' || true; } |
        { ! grep .; }

    step "release build (build-rel) and valgrind memcheck of agent integration tests"
    # Prefix /usr: the packages step below packages this build.
    build build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr
    LARS_IT_AGENT_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
        ctest --test-dir build-rel --output-on-failure -j2 --timeout 600 \
        -R '^(it_routing|it_report_log|it_signals|it_garbage)$'

    step "performance regression check (agent/echo throughput ratio)"
    contrib/bench/run.sh --check build-rel

    step "Debian packages from build-rel: dpkg -i, check, purge (tests/install/packages.sh)"
    LARS_JOBS="$(nproc)" tests/install/packages.sh build-rel

    step "fuzzing: each harness ${LARS_FUZZ_SECONDS:-60}s (clang, libFuzzer, ASan+UBSan)"
    CC=clang cmake -S . -B build-fuzz -DLARS_FUZZ=ON -DLARS_BUILD_TESTS=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUZZ_SECONDS="${LARS_FUZZ_SECONDS:-60}" >/dev/null
    cmake --build build-fuzz -j"$(nproc)" --target fuzz

    step "all green"
}

case "${1:-}" in
    deps) deps ;;
    build) deps; build build ;;
    run)
        deps
        build build
        # The sample config as it is, except its route cache: build/cache
        # instead of /var/cache/lars-agent (the packaged agent's, which the
        # packages check wants absent), so a dev run leaves nothing outside
        # the tree.
        sed 's|^\( *cache_dir = \)"/var/cache/lars-agent";|\1"'"$PWD"'/build/cache";|' \
            etc/lars-agent.conf >build/dev-agent.conf
        grep -q "cache_dir = \"$PWD/build/cache\"" build/dev-agent.conf ||
            { echo "dev.sh: cache_dir not found in etc/lars-agent.conf" >&2; exit 1; }
        exec build/bin/lars-agent -f -c build/dev-agent.conf
        ;;
    test) deps; run_tests ;;
    *) echo "usage: contrib/dev.sh run|test|deps|build" >&2; exit 2 ;;
esac
