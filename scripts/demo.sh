#!/usr/bin/env bash
# tern in one command: builds libtern (release) and the C examples, then runs
# examples-c/concurrent, which sends many requests at once through one tern session
# and counts the outcomes.
#
#   scripts/demo.sh              starts a local nginx (scripts/testenv.sh), sends 1000
#                                requests over HTTP/1.1, 1000 over HTTPS (HTTP/2) and
#                                100 downloads of 1 MiB, prints the results, stops nginx
#   scripts/demo.sh URL...       fetches your URLs instead (no local server); options of
#                                concurrent may come first, for example
#                                scripts/demo.sh -n 50 -j 10 https://example.org/
#
# Installs what is missing with apt-get (Debian, as root): a C compiler, make, ...;
# scripts/testenv.sh installs nginx. Rust (cargo 1.88 or later) must be installed.
# Exit status: 0 when every request completed with a 2xx status.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
log() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# --- what the build needs from the system ---------------------------------------------
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)       # also the linker cargo uses
command -v make >/dev/null 2>&1 || need+=(make)
[[ -e /usr/include/stdio.h ]] || need+=(libc6-dev)
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
if (($# == 0)); then
    command -v curl >/dev/null 2>&1 || need+=(curl) # scripts/testenv.sh waits with it
fi
if ((${#need[@]})); then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing ${need[*]}: install them first (Debian: apt-get install ${need[*]})"
    fi
    log "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x $HOME/.cargo/bin/cargo ]]; then
        PATH=$HOME/.cargo/bin:$PATH
    else
        die "cargo not found: install Rust 1.88 or later (https://rustup.rs:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), then run this again"
    fi
fi

# --- build ------------------------------------------------------------------------------
log "cargo build --release"
cargo build --release
log "make -C examples-c PROFILE=release"
make -C examples-c --no-print-directory PROFILE=release >&2
concurrent=$root/target/examples-c/release/concurrent

# --- your URLs ----------------------------------------------------------------------------
if (($# > 0)); then
    log "$concurrent $*"
    exec "$concurrent" "$@"
fi

# --- the local servers --------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck disable=SC2317 # called by the trap
stop_servers() { scripts/testenv.sh stop >/dev/null 2>&1 || true; }
trap stop_servers EXIT
log "starting the local servers (scripts/testenv.sh start)"
env_file=$(scripts/testenv.sh start) || die "the local servers did not start (see above)"
# shellcheck disable=SC1090
. "$env_file"

status=0
demo() {
    local title=$1
    shift
    printf '\n== %s\n$ %s\n' "$title" "${*/#$root\//}"
    "$@" || status=1
}
demo "1000 requests over HTTP/1.1 (plain http, up to 100 at a time on pooled connections)" \
    "$concurrent" -n 1000 "$TERN_TEST_HTTP/hello"
demo "1000 requests over HTTPS (HTTP/2: multiplexed on one TLS connection)" \
    "$concurrent" -n 1000 -c "$TERN_TEST_CA" "$TERN_TEST_HTTPS/hello"
demo "100 downloads of 1 MiB, http and https alternately" \
    "$concurrent" -n 100 -j 20 -c "$TERN_TEST_CA" "$TERN_TEST_HTTP/bytes/1m" "$TERN_TEST_HTTPS/bytes/1m"
echo
if ((status == 0)); then
    echo "demo: every request completed with a 2xx status."
else
    echo "demo: some requests failed (see above)."
fi
echo "demo: the program is examples-c/concurrent.c; try scripts/demo.sh URL... with your own URLs."
exit "$status"
