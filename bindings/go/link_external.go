//go:build tern_external

package tern

// With -tags tern_external: an installed libtern. Point cgo at it yourself, e.g.
//
//	CGO_CFLAGS=-I/opt/tern/include \
//	CGO_LDFLAGS="-L/opt/tern/lib -Wl,-rpath,/opt/tern/lib" go build -tags tern_external

// #cgo LDFLAGS: -ltern
import "C"
