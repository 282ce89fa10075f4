#!/usr/bin/env bash
# Installs tern like a C library (scripts/install.sh) into a prefix under target/ and
# uses it the ways a C, C++, Swift or Python program would, against the local test
# servers:
#
#   - the installed layout: the SONAME link chain, tern.pc, the CMake package, headers;
#   - libtern.so exports only the tern_ functions tern.h declares (nm -D), no data;
#   - examples-c built with `pkg-config --cflags --libs tern` (shared), with
#     `pkg-config --static` (libtern.a), and with CMake find_package(tern), and run;
#   - a C++ program linked with only -ltern (static) and tern.pc's Libs.private:
#     the host's SIGPIPE at SIG_DFL and its SIGINT/SIGUSR1 handlers survive
#     connections reset under large uploads; runtime start/free cycles leak nothing
#     (valgrind) and do not grow the resident set (natively);
#   - Python ctypes loads libtern.so.0 and runs requests with callbacks;
#   - clang -fmodules imports tern through include/module.modulemap (as Swift would);
#   - a staged install (--destdir, a relative --libdir) is relocatable, and --uninstall
#     removes it.
#
#   tests/packaging/run.sh
#
# Environment:
#   TERN_PACKAGING_PROFILE=debug   install the debug build (default: release)
#   TERN_PACKAGING_VALGRIND=0      skip the valgrind run
#   CC, CXX                        compilers (default cc, c++); clang is used for modules
#
# Installs pkg-config, cmake, clang, valgrind, python3, g++ and binutils when missing
# (Debian, as root). Prints one PASS/FAIL line per test, then exactly one line
# "N passed, M failed"; exits non-zero if any failed. Products and logs:
# target/packaging/.
# shellcheck disable=SC2317 # the functions below are called through step/run
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd -P)
SUITE=tests/packaging
# shellcheck source=scripts/suite.sh
. "$root/scripts/suite.sh"
out=$root/target/packaging
RUN_LOGS=$out/logs
rm -rf "$out"
mkdir -p "$out/logs"
CC=${CC:-cc}
CXX=${CXX:-c++}
profile=${TERN_PACKAGING_PROFILE:-release}

# step NAME COMMAND...: one test, its output in a log; passes when COMMAND exits 0.
step() {
    local name=$1 t0 rc
    shift
    local logf=$out/logs/${name//[^A-Za-z0-9_.-]/_}.log
    t0=$(now)
    "$@" >"$logf" 2>&1
    rc=$?
    record "$name" "$rc" "$(elapsed "$t0")" "$logf"
    return "$rc"
}


# --- what the tests need from the system -----------------------------------------------
need=()
for pair in pkg-config:pkgconf cmake:cmake clang:clang valgrind:valgrind python3:python3 \
    g++:g++ gcc:gcc nm:binutils readelf:binutils curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    if [[ $(id -u) != 0 ]]; then
        log "missing ${need[*]} and not root: install them first"
        record "tools (${need[*]})" 1 0
        finish
    fi
    log "installing ${need[*]}"
    t0=$(now)
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >"$out/logs/apt.log" 2>&1 &&
        apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$out/logs/apt.log" 2>&1; then
        log "installed ${need[*]} in $(elapsed "$t0")s"
    else
        record "apt-get install ${need[*]}" 1 "$(elapsed "$t0")" "$out/logs/apt.log"
        finish
    fi
fi

ensure_servers
# shellcheck disable=SC2153 # set by the test environment
H=$TERN_TEST_HTTP S=$TERN_TEST_HTTPS CA=$TERN_TEST_CA

# --- install -------------------------------------------------------------------------------
version=$(awk '/^\[/ { p = ($0 == "[package]") } p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' Cargo.toml)
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
pfx=$out/prefix
lib=$pfx/lib
inc=$pfx/include
step "install.sh --prefix target/packaging/prefix ($profile)" \
    scripts/install.sh --prefix "$pfx" "--$profile" || finish
export PKG_CONFIG_PATH=$lib/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR

# --- the installed layout ------------------------------------------------------------------
check_layout() {
    local ok=0 f
    for f in "$lib/libtern.so.$version" "$lib/libtern.a" "$inc/tern.h" "$inc/module.modulemap" \
        "$lib/pkgconfig/tern.pc" "$lib/cmake/tern/ternConfig.cmake" \
        "$lib/cmake/tern/ternConfigVersion.cmake"; do
        if [[ -f $f && ! -L $f ]]; then echo "file: $f"; else
            echo "missing (or not a file): $f"
            ok=1
        fi
    done
    [[ $(readlink "$lib/libtern.so") == "libtern.so.$major" ]] || {
        echo "libtern.so -> $(readlink "$lib/libtern.so"), want libtern.so.$major"
        ok=1
    }
    [[ $(readlink "$lib/libtern.so.$major") == "libtern.so.$version" ]] || {
        echo "libtern.so.$major -> $(readlink "$lib/libtern.so.$major"), want libtern.so.$version"
        ok=1
    }
    local soname
    soname=$(readelf -d "$lib/libtern.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    echo "SONAME: $soname"
    [[ $soname == "libtern.so.$major" ]] || ok=1
    cmp include/tern.h "$inc/tern.h" || ok=1
    cmp include/module.modulemap "$inc/module.modulemap" || ok=1
    if [[ -f include/tern.hpp ]]; then cmp include/tern.hpp "$inc/tern.hpp" || ok=1; fi
    return "$ok"
}
step "layout: SONAME libtern.so.$major, link chain, headers" check_layout

check_pc() (
    set -e
    pkg-config --print-errors --exists tern
    [[ $(pkg-config --modversion tern) == "$version" ]]
    echo "cflags: $(pkg-config --cflags tern)"
    echo "libs: $(pkg-config --libs tern)"
    echo "static: $(pkg-config --static --libs tern)"
    [[ $(pkg-config --variable=libdir tern) == "$lib" ]]
    [[ $(pkg-config --variable=includedir tern) == "$inc" ]]
    [[ " $(pkg-config --libs tern) " == *" -ltern "* ]]
    # Libs.private: what rustc --print native-static-libs listed (pthread at least).
    grep -E '^Libs.private: .*-lpthread' "$lib/pkgconfig/tern.pc"
    [[ " $(pkg-config --static --libs tern) " == *" -lpthread "* ]]
    [[ " $(pkg-config --libs tern) " != *" -lpthread "* ]]
    if pkg-config --help 2>&1 | grep -q -- --validate; then pkg-config --validate tern; fi
)
step "tern.pc: version $version, libdir, Libs.private" check_pc

# Exactly the functions tern.h declares, as text (T) symbols; nothing else exported.
check_exports() {
    local so=$lib/libtern.so.$version
    nm -D --defined-only "$so" | awk '{ print $2, $3 }' | sort >"$out/exports.txt"
    grep -vE '^\s*(\*|/\*|//)' "$inc/tern.h" | grep -oE '\btern_[a-z0-9_]+\(' | tr -d '(' |
        sort -u >"$out/header-functions.txt"
    echo "$(wc -l <"$out/exports.txt") dynamic symbols, $(wc -l <"$out/header-functions.txt") functions in tern.h"
    local bad
    bad=$(grep -vE '^T tern_[a-z0-9_]+$' "$out/exports.txt")
    if [[ -n $bad ]]; then
        echo "exported, but not a tern_ function:"
        echo "$bad"
        return 1
    fi
    if ! diff <(awk '{ print $2 }' "$out/exports.txt") "$out/header-functions.txt"; then
        echo "(<: exported, not in tern.h; >: in tern.h, not exported)"
        return 1
    fi
}
step "nm -D: only the tern_ functions of tern.h" check_exports

# --- examples-c with pkg-config: shared -----------------------------------------------------
ex=examples-c
bin=$out/bin
mkdir -p "$bin"
cflags=(-std=c11 -Wall -Wextra -Werror -O2 -g)
read -ra pc_cflags <<<"$(pkg-config --cflags tern)"
read -ra pc_libs <<<"$(pkg-config --libs tern)"
rpath=-Wl,-rpath,$(pkg-config --variable=libdir tern)
for p in fetch concurrent; do
    step "cc $p.c \$(pkg-config --cflags --libs tern)" \
        "$CC" "${cflags[@]}" "${pc_cflags[@]}" -o "$bin/$p" "$ex/$p.c" "${pc_libs[@]}" -pthread "$rpath"
done
# needs_shared BINARY: linked to libtern.so.0, resolved in the prefix.
needs_shared() {
    readelf -d "$1" | grep NEEDED
    readelf -d "$1" | grep -q "NEEDED.*\[libtern\.so\.$major\]" &&
        ldd "$1" | grep -F "libtern.so.$major => $lib/libtern.so.$major"
}
# static_only BINARY: no libtern.so among its dependencies.
static_only() {
    readelf -d "$1" | grep NEEDED
    ! readelf -d "$1" | grep -q 'NEEDED.*libtern'
}
if [[ -x $bin/fetch ]]; then
    step "fetch (shared): NEEDED libtern.so.$major from the prefix" needs_shared "$bin/fetch"
    run "fetch (shared) http" 0 --grep '^HTTP/1\.1 200' --grep '^body: 13 bytes' -- "$bin/fetch" "$H/hello"
    run "fetch (shared) https h2 1 MiB" 0 --grep '^HTTP/2\.0 200' --grep '^body: 1048576 bytes' \
        -- "$bin/fetch" "$S/bytes/1m" "$CA"
fi
if [[ -x $bin/concurrent ]]; then
    run "concurrent (shared) 400 http+https" 0 --grep '^outcomes: +OK 400$' \
        --grep 'HTTP/1\.1 200 HTTP/2 200' -- "$bin/concurrent" -n 400 -c "$CA" "$H/hello" "$S/hello"
fi

# --- examples-c with pkg-config --static: libtern.a --------------------------------------------
# -ltern would find libtern.so first (both are in libdir), so it is asked for statically:
# the rest of `pkg-config --static --libs` (Libs.private) stays dynamic.
static_libs=()
# shellcheck disable=SC2054 # -Wl,-Bstatic is one argument
for tok in $(pkg-config --static --libs tern); do
    if [[ $tok == -ltern ]]; then static_libs+=(-Wl,-Bstatic -ltern -Wl,-Bdynamic); else static_libs+=("$tok"); fi
done
echo "static link: ${static_libs[*]}" >"$out/logs/static-link-line.txt"
step "cc concurrent.c \$(pkg-config --static --libs tern)" \
    "$CC" "${cflags[@]}" "${pc_cflags[@]}" -o "$bin/concurrent-static" "$ex/concurrent.c" "${static_libs[@]}"
if [[ -x $bin/concurrent-static ]]; then
    step "concurrent-static: no libtern.so" static_only "$bin/concurrent-static"
    run "concurrent-static 400 http+https" 0 --grep '^outcomes: +OK 400$' \
        -- "$bin/concurrent-static" -n 400 -c "$CA" "$H/hello" "$S/hello"
fi

# --- examples-c with CMake find_package(tern) ---------------------------------------------------
cm=$out/cmake
cmake_configure() { # DIR VERSION
    cmake -S tests/packaging/cmake -B "$1" -DCMAKE_PREFIX_PATH="$pfx" -DTERN_WANT_VERSION="$2" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERN_EXAMPLES="$root/examples-c" -DCMAKE_C_COMPILER="$CC"
}
cmake_build() {
    cmake_configure "$cm/build" "$major.$minor" &&
        grep -F "tern $version from $lib/cmake/tern" "$cm/build/CMakeCache.txt" >/dev/null ||
        grep -F "tern_DIR:PATH=$lib/cmake/tern" "$cm/build/CMakeCache.txt" || return 1
    cmake --build "$cm/build" -j 2
}
if step "cmake find_package(tern $major.$minor): fetch, concurrent, concurrent-static" cmake_build; then
    step "cmake fetch: NEEDED libtern.so.$major from the prefix" needs_shared "$cm/build/fetch"
    step "cmake concurrent-static: no libtern.so" static_only "$cm/build/concurrent-static"
    run "cmake fetch https" 0 --grep '^HTTP/2\.0 200' -- "$cm/build/fetch" "$S/hello" "$CA"
    run "cmake concurrent 200 (tern::tern)" 0 --grep '^outcomes: +OK 200$' \
        -- "$cm/build/concurrent" -n 200 -c "$CA" "$H/hello" "$S/hello"
    run "cmake concurrent-static 200 (tern::tern_static)" 0 --grep '^outcomes: +OK 200$' \
        -- "$cm/build/concurrent-static" -n 200 -c "$CA" "$H/hello" "$S/hello"
fi
# A version the install does not satisfy is refused: another minor before 1.0, another major.
cmake_refuses() {
    local logf=$cm/want-$1.log
    if cmake_configure "$cm/want-$1" "$1" >"$logf" 2>&1; then
        cat "$logf"
        echo "configured, but tern $version does not satisfy $1"
        return 1
    fi
    cat "$logf"
    grep -q 'considered but not accepted' "$logf"
}
step "cmake find_package(tern $major.$((minor + 1))) is refused" cmake_refuses "$major.$((minor + 1))"
step "cmake find_package(tern $((major + 1)).0) is refused" cmake_refuses "$((major + 1)).0"

# --- the C++ host, linked statically with -ltern and Libs.private only -------------------------
step "c++ engine.cpp -ltern (static) + Libs.private" \
    "$CXX" -std=c++17 -Wall -Wextra -Werror -O2 -g "${pc_cflags[@]}" -o "$bin/engine" \
    tests/packaging/engine.cpp "${static_libs[@]}"
if [[ -x $bin/engine ]]; then
    step "engine: no libtern.so" static_only "$bin/engine"
    run "engine: SIGPIPE at SIG_DFL, resets mid-upload; host handlers" 0 \
        --grep '^signals: OK' -- "$bin/engine" signals "$H" "${S##*:}" "$CA"
    run "engine: 2000 runtime cycles, RSS flat (native)" 0 --grep '^cycles: OK: 2000 cycles' \
        -- "$bin/engine" cycles 2000 "$H" "$S" "$CA" --rss-limit-kib 1536
    if [[ ${TERN_PACKAGING_VALGRIND:-1} != 0 ]]; then
        # shellcheck disable=SC2054 # the commas are in valgrind's option values
        run "engine: 200 runtime cycles under valgrind, no leaks" 0 --grep '^cycles: OK: 200 cycles' \
            -- valgrind -q --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
            --num-callers=40 --suppressions=tests/packaging/valgrind.supp \
            "$bin/engine" cycles 200 "$H" "$S" "$CA"
    fi
fi

# --- C++ header, if installed ---------------------------------------------------------------
if [[ -f $inc/tern.hpp ]]; then
    printf '#include <tern.hpp>\nint main() { return 0; }\n' >"$out/hpp.cpp"
    step "c++17 #include <tern.hpp> from the prefix" \
        "$CXX" -std=c++17 -Wall -Wextra -Werror "${pc_cflags[@]}" -fsyntax-only "$out/hpp.cpp"
fi

# --- Python ctypes ----------------------------------------------------------------------------
run "python3 ctypes: libtern.so.$major, 600 requests with callbacks" 0 --grep '^ctypes: OK' \
    -- python3 tests/packaging/ctypes_test.py "$lib/libtern.so.$major" "$version" "$H" "$S" "$CA"

# --- clang modules: the module map Swift reads -------------------------------------------------
for lang in objective-c c; do
    spelled=$([[ $lang == c ]] && echo '#pragma clang module import tern' || echo '@import tern;')
    step "clang -fmodules -x $lang: $spelled" \
        clang -Wall -Wextra -Werror -fmodules -fmodules-cache-path="$out/modules-cache-$lang" \
        "${pc_cflags[@]}" -x "$lang" tests/packaging/modules.c -x none -o "$bin/modules-$lang" \
        "${pc_libs[@]}" "$rpath"
    [[ -x $bin/modules-$lang ]] &&
        run "modules ($lang) runs" 0 --grep '^modules: OK' -- "$bin/modules-$lang"
done

# --- a staged install: --destdir, a relative --libdir; relocatable; --uninstall -----------------
stage=$out/stage
# A Debian-style libdir, which CMake searches too (lib/<CMAKE_LIBRARY_ARCHITECTURE>).
multiarch=$("$CC" -print-multiarch 2>/dev/null)
multilib=lib64
[[ -n $multiarch ]] && multilib=lib/$multiarch
check_staged() (
    set -e
    scripts/install.sh --no-build "--$profile" --prefix /opt/tern --libdir "$multilib" --destdir "$stage"
    local l=$stage/opt/tern/$multilib
    test -f "$l/libtern.so.$version" -a -L "$l/libtern.so" -a -f "$stage/opt/tern/include/tern.h"
    grep -x 'prefix=/opt/tern' "$l/pkgconfig/tern.pc"
    grep -x "libdir=\${exec_prefix}/$multilib" "$l/pkgconfig/tern.pc"
    if grep -rF "$stage" "$l/pkgconfig" "$l/cmake"; then
        echo "the staging directory is named in the installed files"
        return 1
    fi
    # The CMake package is found where it lies, not where it was meant to go.
    cmake -S tests/packaging/cmake -B "$out/cmake-staged" -DCMAKE_PREFIX_PATH="$stage/opt/tern" \
        -DTERN_WANT_VERSION="$major.$minor" -DTERN_EXAMPLES="$root/examples-c" -DCMAKE_C_COMPILER="$CC"
    cmake --build "$out/cmake-staged" --target concurrent-static
    "$out/cmake-staged/concurrent-static" -n 10 "$H/hello"
    scripts/install.sh --uninstall --prefix /opt/tern --libdir "$multilib" --destdir "$stage"
    local left
    left=$(find "$stage" -type f -o -type l)
    if [[ -n $left ]]; then
        echo "left after --uninstall: $left"
        return 1
    fi
)
step "install.sh --destdir, --libdir; relocatable; --uninstall" check_staged

finish
