//go:build tern_release && !tern_external

package tern

// With -tags tern_release: the release library of this checkout
// (`cargo build --release`, plus the libtern.so.0 link in target/release).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -ltern -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
