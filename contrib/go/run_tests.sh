#!/bin/sh
# Runs the Go client's checks: go vet, then go test against a real
# lars-agent of BUILD_DIR (BUILD_DIR/bin/lars-agent, BUILD_DIR/plugins).
# Offline: the module needs nothing outside the standard library, and
# GOPROXY=off makes any attempt to fetch one fail loudly.
# Usage: contrib/go/run_tests.sh BUILD_DIR [go test flags...]
# Exit status: go's.
set -eu

if [ $# -lt 1 ] || [ ! -x "$1/bin/lars-agent" ]; then
    echo "usage: $0 BUILD_DIR [go test flags]  (BUILD_DIR/bin/lars-agent must exist)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
shift
cd "$(dirname "$0")"

export LARS_BUILD_DIR="$build"
export GOPROXY=off
export GOFLAGS=-mod=mod
# go needs a writable build cache; CI users may have no writable HOME.
if [ -z "${GOCACHE:-}" ]; then
    if [ -n "${HOME:-}" ] && [ -w "${HOME:-/nonexistent}" ]; then
        :
    else
        export GOCACHE="${TMPDIR:-/tmp}/lars-go-cache"
    fi
fi

go vet ./...
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    echo "gofmt: not formatted: $unformatted" >&2
    exit 1
fi
exec go test -count=1 "$@" ./...
