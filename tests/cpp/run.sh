#!/usr/bin/env bash
# Tests include/tern.hpp, the C++17 interface: builds tests/cpp/tern_test.cpp,
# tests/cpp/ws_test.cpp (the WebSocket classes) and examples-cpp/fetch.cpp with g++
# and clang++ (when present; installed with apt when missing and running as root),
# -std=c++17 -Wall -Wextra -Werror -pedantic plus
# stricter warnings, under AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer,
# with exceptions and with -fno-exceptions -fno-rtti, against target/debug/libtern.so,
# and runs them against the local test servers.
#
#   tests/cpp/run.sh
#
# The servers: the TERN_TEST_* variables when already set, else target/testenv/env.sh
# when its nginx answers, else `scripts/testenv.sh start` here (and `stop` on exit).
# ws_test needs TERN_TEST_WS (the WebSocket peer) and fails without it.
#
# Environment:
#   TERN_CPP_TESTS_NO_BUILD=1   do not run `cargo build` first
#   TERN_CPP_TESTS_CLANG=0      do not use (or install) clang++
#   CXX                         the GNU compiler (default g++)
#
# Prints one PASS/FAIL line per step, then exactly one line "N passed, M failed";
# exits non-zero if any failed. Build products and logs: target/cpp-tests/.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd -P)
SUITE=tests/cpp
# shellcheck source=scripts/suite.sh
. "$root/scripts/suite.sh"
out=$root/target/cpp-tests
lib=$root/target/debug
logs=$out/logs
RUN_LOGS=$logs
RUN_LOG_PREFIX=run-
RUN_TIMEOUT=90
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.rc "$logs"/*.secs
GXX=${CXX:-g++}

ensure_servers
for v in TERN_TEST_HTTP TERN_TEST_HTTPS TERN_TEST_CA; do
    if [[ -z ${!v:-} ]]; then
        record "test environment" "$v is not set" 0
        finish
    fi
done

# --- compilers --------------------------------------------------------------------------
# asan_links CXX: whether CXX can link an ASan + UBSan program (clang needs its
# compiler-rt package, which Debian ships apart from clang).
asan_links() {
    echo 'int main() { return 0; }' | "$1" -x c++ -fsanitize=address,undefined - -o "$out/.asan-probe" \
        >/dev/null 2>&1
}
compilers=()
if command -v "$GXX" >/dev/null 2>&1; then
    compilers+=("$GXX")
else
    record "$GXX present" "not found" 0
fi
if [[ ${TERN_CPP_TESTS_CLANG:-1} != 0 ]]; then
    if ! command -v clang++ >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing clang (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >"$logs/apt-clang.log" 2>&1
        apt-get install -y -qq --no-install-recommends clang >>"$logs/apt-clang.log" 2>&1
    fi
    if command -v clang++ >/dev/null 2>&1 && ! asan_links clang++ && [[ $(id -u) == 0 ]]; then
        major=$(clang++ -dumpversion | cut -d. -f1)
        log "installing libclang-rt-$major-dev (clang's sanitizer runtimes)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "libclang-rt-$major-dev" >>"$logs/apt-clang.log" 2>&1
    fi
    if command -v clang++ >/dev/null 2>&1 && asan_links clang++; then
        compilers+=(clang++)
    else
        log "clang++ with sanitizer runtimes is not available: g++ only"
    fi
fi
((${#compilers[@]})) || finish

# --- libtern ----------------------------------------------------------------------------
if [[ ${TERN_CPP_TESTS_NO_BUILD:-0} != 1 ]]; then
    t0=$(now)
    cargo build --quiet >"$logs/cargo-build.log" 2>&1
    rc=$?
    record "libtern (cargo build)" "$rc" "$(elapsed "$t0")" "$logs/cargo-build.log"
    ((rc == 0)) || finish
fi
# The SONAME link, as examples-c/Makefile makes it (an installed real file is kept).
[[ -e $lib/libtern.so.0 && ! -L $lib/libtern.so.0 ]] || ln -sf libtern.so "$lib/libtern.so.0"

# --- static check: the wrapper covers the C API ------------------------------------------
# Every function tern.h declares is called by tern.hpp, except tern_error_code (each
# call's returned code is its error's code, and is what tern.hpp reports).
t0=$(now)
missing=()
while read -r fn; do
    [[ $fn == tern_error_code ]] && continue
    grep -q "\\b$fn(" include/tern.hpp || missing+=("$fn")
done < <(grep -vE '^\s*(\*|/\*|//)' include/tern.h | grep -oE '\btern_[a-z0-9_]+\(' | tr -d '(' | sort -u)
if ((${#missing[@]})); then
    echo "not used by include/tern.hpp: ${missing[*]}" >"$logs/coverage.log"
    record "tern.hpp wraps every tern.h function" "missing" "$(elapsed "$t0")" "$logs/coverage.log"
else
    record "tern.hpp wraps every tern.h function" 0 "$(elapsed "$t0")"
fi

# --- builds (in parallel) -----------------------------------------------------------------
std_warn=(-std=c++17 -Wall -Wextra -Werror -pedantic)
# Stricter warnings a user's build may have on: the header must not trip them.
strict=(-Wshadow -Wconversion -Wsign-conversion -Wold-style-cast -Wnon-virtual-dtor -Wcast-qual
    -Wundef -Wzero-as-null-pointer-constant -Wextra-semi)
# shellcheck disable=SC2054 # address,undefined is one argument
san=(-g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
# shellcheck disable=SC2054 # -Wl,-rpath,DIR is one argument
link=(-L"$lib" -ltern -Wl,-rpath,"$lib" -pthread)
jobs_max=$(nproc 2>/dev/null || echo 2)
((jobs_max < 2)) && jobs_max=2
names=() logfs=()
# build NAME LOG COMMAND...: starts a build in the background (at most jobs_max at
# once); its exit status and duration go to LOG.rc and LOG.secs.
build() {
    local name=$1 logf=$2
    shift 2
    while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n 2>/dev/null || true; done
    names+=("$name")
    logfs+=("$logf")
    (
        t0=$(now)
        "$@" >"$logf" 2>&1
        echo $? >"$logf.rc"
        elapsed "$t0" >"$logf.secs"
    ) &
}
# header_only.cpp: tern.hpp alone, included twice (the include guard).
printf '#include "tern.hpp"\n#include "tern.hpp"\nint main() { return tern::version().empty() ? 1 : 0; }\n' \
    >"$out/header_only.cpp"
for cxx in "${compilers[@]}"; do
    c=$(basename "$cxx")
    # Optimised (some GCC warnings, dangling pointers among them, need it), but not
    # more than needed: g++ -O1 with ASan takes three times as long as -Og here. The
    # -fno-exceptions builds, the same code minus the try blocks, at -O0.
    opt=-O1
    [[ $c == clang* ]] || opt=-Og
    build "$c: tern.hpp alone, C++17 strict" "$logs/build-$c-header.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" -I"$root/include" -fsyntax-only "$out/header_only.cpp"
    build "$c: tern.hpp alone, C++17 strict -fno-exceptions" "$logs/build-$c-header-noexc.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" -fno-exceptions -fno-rtti -I"$root/include" -fsyntax-only \
        "$out/header_only.cpp"
    build "$c: tern_test.cpp, C++20" "$logs/build-$c-test-cxx20.log" \
        "$cxx" -std=c++20 -Wall -Wextra -Werror -pedantic -I"$root/include" -fsyntax-only tests/cpp/tern_test.cpp
    build "$c: tern_test.cpp (ASan+UBSan)" "$logs/build-$c-test.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" "${san[@]}" "$opt" -I"$root/include" tests/cpp/tern_test.cpp \
        -o "$out/tern_test-$c" "${link[@]}"
    build "$c: tern_test.cpp -fno-exceptions -fno-rtti (ASan+UBSan)" "$logs/build-$c-test-noexc.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" "${san[@]}" -O0 -fno-exceptions -fno-rtti -I"$root/include" \
        tests/cpp/tern_test.cpp -o "$out/tern_test-noexc-$c" "${link[@]}"
    build "$c: ws_test.cpp, C++20" "$logs/build-$c-ws-cxx20.log" \
        "$cxx" -std=c++20 -Wall -Wextra -Werror -pedantic -I"$root/include" -fsyntax-only tests/cpp/ws_test.cpp
    build "$c: ws_test.cpp (ASan+UBSan)" "$logs/build-$c-ws.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" "${san[@]}" "$opt" -I"$root/include" tests/cpp/ws_test.cpp \
        -o "$out/ws_test-$c" "${link[@]}"
    build "$c: ws_test.cpp -fno-exceptions -fno-rtti (ASan+UBSan)" "$logs/build-$c-ws-noexc.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" "${san[@]}" -O0 -fno-exceptions -fno-rtti -I"$root/include" \
        tests/cpp/ws_test.cpp -o "$out/ws_test-noexc-$c" "${link[@]}"
    build "$c: examples-cpp/fetch.cpp (ASan+UBSan)" "$logs/build-$c-fetch.log" \
        "$cxx" "${std_warn[@]}" "${strict[@]}" "${san[@]}" "$opt" -I"$root/include" examples-cpp/fetch.cpp \
        -o "$out/fetch-$c" "${link[@]}"
    build "$c: sanitizer_canary.cpp (ASan+UBSan)" "$logs/build-$c-canary.log" \
        "$cxx" "${std_warn[@]}" "${san[@]}" -O1 -I"$root/include" tests/cpp/sanitizer_canary.cpp \
        -o "$out/canary-$c" "${link[@]}"
done
wait
for i in "${!names[@]}"; do
    f=${logfs[$i]}
    record "build ${names[$i]}" "$(cat "$f.rc" 2>/dev/null || echo 'no status')" \
        "$(cat "$f.secs" 2>/dev/null || echo 0)" "$f"
done

# --- runs -----------------------------------------------------------------------------------
# LeakSanitizer needs no suppressions: libtern's allocations go through ASan's malloc
# (Rust uses the system allocator) and tern_runtime_free joins its threads, so nothing
# of Rust's is left at exit. The canary checks that the sanitizers are live at all.
# libtern is built without frame pointers, so ASan's fast unwinder shows Rust frames
# only in part; to read a report in full, rerun the program with
# ASAN_OPTIONS=fast_unwind_on_malloc=0.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1


# run_fails NAME PATTERN... -- COMMAND...: a run that must exit non-zero, with every
# PATTERN in its output (the canaries).
run_fails() {
    local name=$1
    shift
    local -a pats=()
    while [[ $1 != -- ]]; do
        pats+=("$1")
        shift
    done
    shift
    local logf=$logs/run-${name//[^A-Za-z0-9_.-]/_}.log t0 rc status=0
    if [[ ! -x $1 ]]; then
        record "$name" "not built" 0
        return
    fi
    t0=$(now)
    # The slow unwinder: whole stacks through libtern's Rust frames.
    ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0 timeout 60 "$@" >"$logf" 2>&1
    rc=$?
    [[ $rc == 0 ]] && status="exit 0: the sanitizer did not fire"
    for p in "${pats[@]}"; do
        if ! grep -qE -- "$p" "$logf"; then
            echo "output lacks: $p" >>"$logf"
            [[ $status == 0 ]] && status="output lacks: $p"
        fi
    done
    record "$name" "$status" "$(elapsed "$t0")" "$logf"
}

# shellcheck disable=SC2153 # set by the test environment (checked above)
H=$TERN_TEST_HTTP S=$TERN_TEST_HTTPS CA=$TERN_TEST_CA
for cxx in "${compilers[@]}"; do
    c=$(basename "$cxx")
    run_fails "$c: canary: LeakSanitizer sees C++ and Rust leaks" \
        'LeakSanitizer: detected memory leaks' ' in tern_request_new ' ' in main ' -- "$out/canary-$c" leak
    run_fails "$c: canary: ASan sees a use after tern_response_free" \
        'heap-use-after-free' ' in tern_response_free ' 'Response::~Response' -- "$out/canary-$c" uaf
    run_fails "$c: canary: UBSan stops a signed overflow" \
        'runtime error: signed integer overflow' -- "$out/canary-$c" ubsan

    run "$c: tern_test" 0 --grep '^tern_test \(exceptions\): [0-9]+ checks; [0-9]+ passed, 0 failed$' \
        -- "$out/tern_test-$c"
    run "$c: tern_test -fno-exceptions -fno-rtti" 0 --grep '^tern_test \(no exceptions\): [0-9]+ checks; [0-9]+ passed, 0 failed$' \
        -- "$out/tern_test-noexc-$c"
    # The WebSocket classes against scripts/ws_echo_server.py ($TERN_TEST_WS).
    run "$c: ws_test" 0 --grep '^ws_test \(exceptions\): [0-9]+ checks; [0-9]+ passed, 0 failed$' \
        -- "$out/ws_test-$c"
    run "$c: ws_test -fno-exceptions -fno-rtti" 0 \
        --grep '^ws_test \(no exceptions\): [0-9]+ checks; [0-9]+ passed, 0 failed$' -- "$out/ws_test-noexc-$c"

    run "$c: fetch https (h2, blocking)" 0 --grep '^HTTP/2\.0 200 ' --grep '^content-type: text/plain$' \
        --grep '^body: 13 bytes$' -- "$out/fetch-$c" -c "$CA" "$S/hello"
    run "$c: fetch 4 URLs at once" 1 --grep "^$S/hello: 200, HTTP/2\\.0, 13 bytes" \
        --grep "^$H/headers: 200, HTTP/1\\.1, " --grep '^http://127\.0\.0\.1:1/: CONNECTION_REFUSED: .+' \
        --grep "^$H/status/404: 404, HTTP/1\\.1" \
        -- "$out/fetch-$c" -c "$CA" -H 'X-Test: cpp' "$S/hello" "$H/headers" http://127.0.0.1:1/ "$H/status/404"
    run "$c: fetch unknown CA" 1 --grep '^fetch: TLS_VERIFY: .+' -- "$out/fetch-$c" "$S/hello"
    run "$c: fetch bad URL" 1 --grep '^fetch: INVALID_URL: .+' -- "$out/fetch-$c" 'not a url'
done

finish
