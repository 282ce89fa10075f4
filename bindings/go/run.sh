#!/usr/bin/env bash
# Builds libtern and runs the Go binding's checks: go vet, then go test -race against
# the local test servers (scripts/testenv.sh), with cgo's strict pointer checks on.
#
#   bindings/go/run.sh            # from anywhere; as root on Debian it installs
#                                 # golang-go (Go 1.19) with apt when go is missing
#
# Standard library only: no Go module is downloaded (GOPROXY=off, GOTOOLCHAIN=local).
# Go's build cache, GOPATH and temporary files go under target/go in the repository,
# nothing outside it. Servers that are already running are used and left running;
# servers this script had to start are stopped again (by pid, by testenv.sh).
#
# Ends with one line "N passed, M failed" (each Go test and subtest counts once;
# a vet or build failure counts as a failure) and exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
log() { printf 'bindings/go/run.sh: %s\n' "$*" >&2; }

# --- Go and a C compiler --------------------------------------------------------
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ]; then
        log "missing ${need[*]} and not root: install them first"; exit 1
    fi
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off
export CGO_ENABLED=1
export GOCACHE="$root/target/go/cache"
export GOPATH="$root/target/go/path"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOTMPDIR="$root/target/go/tmp"
mkdir -p "$GOCACHE" "$GOPATH" "$GOTMPDIR"
log "$(go version)"

# --- libtern (debug) and its SONAME link ------------------------------------------
(cd "$root" && cargo build --quiet)
lib="$root/target/debug"
if [ ! -e "$lib/libtern.so.0" ] || [ -L "$lib/libtern.so.0" ]; then
    ln -sfn libtern.so "$lib/libtern.so.0"
fi

# --- servers ------------------------------------------------------------------------
started=0
if ! "$root/scripts/testenv.sh" status >/dev/null 2>&1; then
    log "starting the test servers"
    "$root/scripts/testenv.sh" start >/dev/null
    started=1
fi
stop_servers() { if ((started)); then "$root/scripts/testenv.sh" stop >/dev/null 2>&1 || true; fi; }
trap stop_servers EXIT
# shellcheck disable=SC1091
. "$root/target/testenv/env.sh"

# --- vet and tests ------------------------------------------------------------------
cd "$here"
log_file="$root/target/go/test.log"
failed=0
passed=0

log "gofmt -l"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    log "not gofmt-formatted: $unformatted"
    failed=$((failed + 1))
fi

log "go vet ./..."
if ! go vet ./...; then
    failed=$((failed + 1))
fi

# cgocheck=2 also checks that no Go pointer is stored in C memory.
log "go test -race -count=1 ./...  (GODEBUG=cgocheck=2)"
start=$(date +%s)
set +e
GODEBUG=cgocheck=2 go test -race -count=1 -v -timeout 8m ./... 2>&1 | tee "$log_file"
rc=${PIPESTATUS[0]}
set -e
log "go test took $(($(date +%s) - start)) s"
p=$(grep -cE '^ *--- PASS: ' "$log_file" || true)
f=$(grep -cE '^ *--- FAIL: ' "$log_file" || true)
passed=$((passed + p))
failed=$((failed + f))
# A failure outside any test (build error, TestMain's leak check, a crash).
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
