#!/usr/bin/env bash
# Builds libtern and installs it like a C library:
#
#   <libdir>/libtern.so.X.Y.Z            the shared library (SONAME libtern.so.X)
#   <libdir>/libtern.so.X -> libtern.so.X.Y.Z
#   <libdir>/libtern.so   -> libtern.so.X   (the link -ltern finds)
#   <libdir>/libtern.a                   the static library
#   <includedir>/tern.h, tern.hpp (when the tree has it), module.modulemap
#   <libdir>/pkgconfig/tern.pc           pkg-config (Libs.private: for libtern.a)
#   <libdir>/cmake/tern/ternConfig.cmake, ternConfigVersion.cmake
#                                        find_package(tern): tern::tern, tern::tern_static
#
#   scripts/install.sh [--prefix DIR] [--libdir DIR] [--includedir DIR]
#                      [--release | --debug] [--destdir DIR] [--no-build] [--strip]
#   scripts/install.sh --uninstall [--prefix DIR] [--libdir DIR] [--includedir DIR] [--destdir DIR]
#
#   --prefix DIR      where it goes (default /usr/local)
#   --libdir DIR      default PREFIX/lib (relative: under PREFIX, e.g.
#                     lib/x86_64-linux-gnu)
#   --includedir DIR  default PREFIX/include (relative: under PREFIX)
#   --release         build and install the release profile (the default)
#   --debug           the debug profile
#   --destdir DIR     stage under DIR (also the DESTDIR variable): files go to
#                     DIR/PREFIX/..., while tern.pc and the CMake files name PREFIX
#   --no-build        install what target/ already has (no cargo build; the first
#                     run still builds once, to ask rustc for the list below)
#   --strip           strip debug information from the installed libraries
#   --uninstall       remove what an install of this version put there
#
# The list of system libraries libtern.a needs (rustc's --print native-static-libs,
# written to tern.pc's Libs.private and the CMake static target) is asked of rustc
# once and kept in target/<profile>/tern-native-static-libs.txt, keyed on the
# compiler, Cargo.toml and Cargo.lock.
#
# Linux (ELF) only for now. Prints the files it installs.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true # "&" in a ${var//x/y} is plain

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$here"
log() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

prefix=/usr/local libdir='' includedir='' profile=release destdir=${DESTDIR:-}
build=1 strip=0 uninstall=0
while (($#)); do
    arg=$1
    shift
    case $arg in
    --prefix=* | --libdir=* | --includedir=* | --destdir=*)
        set -- "${arg%%=*}" "${arg#*=}" "$@"
        continue
        ;;
    --prefix | --libdir | --includedir | --destdir)
        (($#)) || die "$arg needs a value"
        case $arg in
        --prefix) prefix=$1 ;;
        --libdir) libdir=$1 ;;
        --includedir) includedir=$1 ;;
        --destdir) destdir=$1 ;;
        esac
        shift
        ;;
    --release) profile=release ;;
    --debug) profile=debug ;;
    --no-build) build=0 ;;
    --strip) strip=1 ;;
    --uninstall) uninstall=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $arg (see --help)" ;;
    esac
done

# Absolute, normalised paths (the .pc and CMake files must not depend on the cwd).
absolute() {
    case $1 in
    /*) realpath -m -- "$1" ;;
    *) realpath -m -- "$PWD/$1" ;;
    esac
}
[[ -n $prefix ]] || die "--prefix is empty"
prefix=$(absolute "$prefix")
# A relative --libdir or --includedir is under the prefix (as with meson).
under_prefix() {
    case $1 in
    /*) realpath -m -- "$1" ;;
    *) realpath -m -- "$prefix/$1" ;;
    esac
}
libdir=$(under_prefix "${libdir:-lib}")
includedir=$(under_prefix "${includedir:-include}")
if [[ -n $destdir ]]; then destdir=$(absolute "$destdir"); fi

# --- the package's facts, from Cargo.toml ----------------------------------------------
package_field() { # the first `KEY = "value"` of Cargo.toml's [package] table
    awk -v key="$1" '
        /^\[/ { in_pkg = ($0 == "[package]"); next }
        in_pkg && $1 == key && $2 == "=" {
            sub(/^[^=]*=[ \t]*"/, ""); sub(/"[ \t]*(#.*)?$/, ""); print; exit
        }' Cargo.toml
}
version=$(package_field version)
description=$(package_field description)
url=$(package_field repository)
[[ $version =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)([-+].*)?$ ]] ||
    die "cannot read the version from Cargo.toml (got '$version')"
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
soname=libtern.so.$major
shared_real=libtern.so.$version

files=( # the links before what they lead to (--uninstall follows them)
    "$libdir/libtern.so" "$libdir/$soname" "$libdir/$shared_real" "$libdir/libtern.a"
    "$includedir/tern.h" "$includedir/tern.hpp" "$includedir/module.modulemap"
    "$libdir/pkgconfig/tern.pc"
    "$libdir/cmake/tern/ternConfig.cmake" "$libdir/cmake/tern/ternConfigVersion.cmake"
)

if ((uninstall)); then
    # The links go only when they lead to this version's library (another version
    # installed since keeps them).
    ours() {
        case $1 in
        "$libdir/libtern.so") [[ $(readlink -- "$destdir$1") == "$soname" ]] && ours "$libdir/$soname" ;;
        "$libdir/$soname") [[ $(readlink -- "$destdir$1") == "$shared_real" ]] ;;
        *) true ;;
        esac
    }
    for f in "${files[@]}"; do
        if [[ -e $destdir$f || -L $destdir$f ]] && ours "$f"; then
            rm -f -- "$destdir$f"
            echo "removed $destdir$f"
        fi
    done
    rmdir -- "$destdir$libdir/cmake/tern" 2>/dev/null || true
    exit 0
fi

# --- build -----------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found"
cargo_flags=(--color never --lib)
[[ $profile == release ]] && cargo_flags+=(--release)
target_dir=${CARGO_TARGET_DIR:-}
if [[ -z $target_dir ]]; then
    target_dir=$(cargo metadata --format-version 1 --no-deps --color never |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[[ -n $target_dir ]] || die "cannot find cargo's target directory"
out=$(absolute "$target_dir")/$profile

# The cache key: what the list of native libraries can depend on.
cache=$out/tern-native-static-libs.txt
key=$({
    rustc -vV
    echo "$profile"
    cat Cargo.toml Cargo.lock 2>/dev/null
} | sha256sum | cut -d' ' -f1)
libs_private=''
if [[ -r $cache && $(sed -n 1p "$cache") == "$key" ]]; then
    libs_private=$(sed -n 2p "$cache")
fi

if [[ -z $libs_private ]]; then
    # The build itself, with the list: rustc prints "note: native-static-libs: ..."
    # for the staticlib (cargo replays the note when the library is already fresh).
    # A later plain `cargo build` recompiles the tern crate once (other rustc
    # arguments), hence the cache.
    log "cargo rustc ${cargo_flags[*]} -- --print native-static-libs"
    mkdir -p "$out"
    notes=$out/tern-native-static-libs.log
    if ! cargo rustc "${cargo_flags[@]}" -- --print native-static-libs >"$notes" 2>&1; then
        cat "$notes" >&2
        die "cargo rustc failed"
    fi
    libs_private=$(sed -n 's/^.*note: native-static-libs: *//p' "$notes" | tail -n 1)
    if [[ -z $libs_private ]]; then
        cat "$notes" >&2
        die "rustc printed no native-static-libs note"
    fi
    printf '%s\n%s\n' "$key" "$libs_private" >"$cache"
elif ((build)); then
    log "cargo build ${cargo_flags[*]}"
    cargo build "${cargo_flags[@]}" --quiet
fi
build_hint="cargo build --lib"
[[ $profile == release ]] && build_hint+=" --release"
for f in libtern.so libtern.a; do
    [[ -f $out/$f ]] || die "$out/$f not found: run '$build_hint' first, or drop --no-build"
done
if command -v readelf >/dev/null; then
    got=$(readelf -d "$out/libtern.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [[ $got == "$soname" ]] ||
        die "$out/libtern.so has SONAME '${got:-none}', expected $soname (build.rs sets it)"
else
    log "readelf not found: not checking the SONAME"
fi

# --- install ---------------------------------------------------------------------------
D=$destdir
install -d "$D$libdir" "$D$includedir" "$D$libdir/pkgconfig" "$D$libdir/cmake/tern"

# install_file MODE SRC DEST: a new inode (install unlinks first), so programs running
# from the old library keep it.
install_file() {
    install -m "$1" -- "$2" "$3"
    echo "$3"
}
install_file 0755 "$out/libtern.so" "$D$libdir/$shared_real"
ln -sfn -- "$shared_real" "$D$libdir/$soname" && echo "$D$libdir/$soname -> $shared_real"
ln -sfn -- "$soname" "$D$libdir/libtern.so" && echo "$D$libdir/libtern.so -> $soname"
install_file 0644 "$out/libtern.a" "$D$libdir/libtern.a"
if ((strip)); then
    strip --strip-debug -- "$D$libdir/$shared_real" "$D$libdir/libtern.a"
fi
install_file 0644 include/tern.h "$D$includedir/tern.h"
if [[ -f include/tern.hpp ]]; then
    install_file 0644 include/tern.hpp "$D$includedir/tern.hpp"
fi
install_file 0644 include/module.modulemap "$D$includedir/module.modulemap"

# fill TEMPLATE DEST KEY=VALUE...: replaces each @KEY@.
fill() {
    local text kv
    text=$(<"$1")
    for kv in "${@:3}"; do
        text=${text//@"${kv%%=*}"@/"${kv#*=}"}
    done
    if [[ $text =~ @[a-z_]+@ ]]; then die "$1: ${BASH_REMATCH[0]} left unfilled"; fi
    printf '%s\n' "$text" >"$2"
    chmod 0644 "$2"
    echo "$2"
}
# A path under the prefix is written relative to it, as ${prefix}/... in tern.pc.
pc_path() {
    case $1 in
    "$prefix") echo "\${prefix}" ;;
    "$prefix"/*) echo "\${prefix}/${1#"$prefix"/}" ;;
    *) echo "$1" ;;
    esac
}
pc_libdir=$(pc_path "$libdir")
pc_libdir=${pc_libdir/#\$\{prefix\}/\$\{exec_prefix\}}
fill packaging/tern.pc.in "$D$libdir/pkgconfig/tern.pc" \
    "prefix=$prefix" "libdir=$pc_libdir" "includedir=$(pc_path "$includedir")" \
    "version=$version" "description=$description" "url=$url" "libs_private=$libs_private"
# URL: is optional; an empty one is dropped.
sed -i '/^URL: *$/d' "$D$libdir/pkgconfig/tern.pc"

# CMake: -lfoo becomes foo; anything else (a -framework pair, a flag) stays as it is.
cmake_libs=()
for tok in $libs_private; do
    case $tok in
    -l*) cmake_libs+=("${tok#-l}") ;;
    *) cmake_libs+=("$tok") ;;
    esac
done
cmake_libs_joined=$(
    IFS=';'
    echo "${cmake_libs[*]}"
)
bits=$(rustc --print cfg | sed -n 's/^target_pointer_width="\([0-9]*\)"/\1/p')
fill packaging/ternConfig.cmake.in "$D$libdir/cmake/tern/ternConfig.cmake" \
    "includedir_from_libdir=$(realpath -m --relative-to="$libdir" "$includedir")" \
    "shared_real=$shared_real" "soname=$soname" "static_link_libraries=$cmake_libs_joined"
fill packaging/ternConfigVersion.cmake.in "$D$libdir/cmake/tern/ternConfigVersion.cmake" \
    "version=$version" "major=$major" "minor=$minor" \
    "sizeof_void_p=$((${bits:-64} / 8))" "bits=${bits:-64}"

log "installed tern $version ($profile) into ${D}${prefix}"
