#!/usr/bin/env bash
# Runs every test of tern: formatting and lints, the header check, Rust unit and
# integration tests against real local servers (nginx, started and stopped here), and
# the C examples and C tests under valgrind. Installs what it needs (Debian, as root).
#
#   scripts/test.sh
#
# Ends with one line "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf 'test.sh: %s\n' "$*" >&2; }

# --- what the tests need from the system --------------------------------------------
need=()
for pair in gcc:gcc g++:g++ make:make valgrind:valgrind openssl:openssl curl:curl git:git nm:binutils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ]; then
        log "missing ${need[*]} and not root: install them first"; exit 1
    fi
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Hold thousands of connections open in the stress tests.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

results="$root/target/test-results.txt"
mkdir -p target
: >"$results"

# --- static checks ------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
log "cargo build (regenerates include/tern.h)"
cargo build --quiet
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    if ! git diff --exit-code -- include/; then
        log "include/tern.h is stale: commit the regenerated header"; exit 1
    fi
fi

# --- servers ------------------------------------------------------------------------
stop_servers() { scripts/testenv.sh stop >/dev/null 2>&1 || true; }
trap stop_servers EXIT
scripts/testenv.sh start >/dev/null
# shellcheck disable=SC1091
. target/testenv/env.sh

# --- Rust tests ---------------------------------------------------------------------
log "cargo test"
export TERN_CHECK_HEADER_COMMITTED=1
set +e
cargo test 2>&1 | tee target/cargo-test.log
rust_rc=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { print p + 0, f + 0 }' target/cargo-test.log >>"$results"
if [ "$rust_rc" != 0 ]; then echo "0 1" >>"$results"; fi

# --- suites that end with one "N passed, M failed" line -----------------------------
# run_suite NAME SCRIPT: runs it, adds its counts, and one failure more if it exits
# non-zero (or prints no count).
run_suite() {
    local name=$1 script=$2 log_file=target/$1.log rc line
    log "$name ($script)"
    set +e
    "$script" 2>&1 | tee "$log_file"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log_file" | tail -n 1)
    if [ -n "$line" ]; then
        echo "$line" | awk '{ print $1, $3 }' >>"$results"
    fi
    if [ "$rc" != 0 ] || [ -z "$line" ]; then echo "0 1" >>"$results"; fi
}

run_suite c-tests tests/c/run.sh          # C examples and C tests under valgrind
run_suite packaging tests/packaging/run.sh # install, pkg-config, CMake, static engine, ctypes, modules
run_suite cpp-wrapper tests/cpp/run.sh    # tern.hpp under ASan, LSan and UBSan
run_suite go-binding bindings/go/run.sh   # cgo package: go vet, go test -race
run_suite curl-compare tests/compare/run.sh # each option against the curl CLI, same servers

# --- benchmark smoke run (bench/run.sh --smoke: one round, every client works) -----
log "bench/run.sh --smoke"
if bench/run.sh --smoke >target/bench-smoke.log 2>&1; then
    echo "1 0" >>"$results"
else
    tail -n 40 target/bench-smoke.log >&2
    echo "0 1" >>"$results"
fi

# --- the README's first command (scripts/demo.sh: release build, 2,100 requests) -----
# Last: it starts the local servers itself and stops them when it ends.
log "scripts/demo.sh"
if scripts/demo.sh >target/demo.log 2>&1; then
    tail -n 6 target/demo.log
    echo "1 0" >>"$results"
else
    tail -n 40 target/demo.log >&2
    echo "0 1" >>"$results"
fi

read -r passed failed < <(awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }' "$results")
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
