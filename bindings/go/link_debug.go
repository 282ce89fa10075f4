//go:build !tern_release && !tern_external

package tern

// The default: the debug library of this checkout (`cargo build` in the repository
// root; make the libtern.so.0 -> libtern.so link next to it, as run.sh does). The
// rpath lets test binaries and programs find it without LD_LIBRARY_PATH.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -ltern -Wl,-rpath,${SRCDIR}/../../target/debug
import "C"
