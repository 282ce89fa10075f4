// Package tern is the Go binding of tern, an embeddable HTTP client with a C ABI
// (libtern): HTTP/1.1 and HTTP/2 over a connection pool, TLS verified by default,
// redirects, decoding and time-outs, driven by tern's own runtime threads.
//
//	rt, _ := tern.NewRuntime(tern.RuntimeOptions{})
//	defer rt.Close()
//	s, _ := tern.NewSession(rt, tern.SessionOptions{Timeout: 10 * time.Second})
//	defer s.Close()
//	resp, err := s.Get(ctx, "https://example.org/")
//	if errors.Is(err, tern.ErrTimeoutTotal) { ... }
//
// Requests run on tern's threads; Do blocks its goroutine (not a thread) until the
// response is complete, and Stream returns once the head has arrived, with a Body
// fed as data arrives. A Context ends a request through tern's cancel. Request
// bodies may be any io.Reader. Errors are *Error values carrying tern's code.
//
// Under the hood each request carries a cgo.Handle as tern's user_data, deleted in
// tern's release callback (or at once when tern refuses the request); callbacks are
// exported Go functions that never block tern's threads.
//
// Building needs cgo and libtern: by default the debug build of this checkout
// (../../target/debug, see link_debug.go); -tags tern_release uses
// ../../target/release; -tags tern_external an installed library found through
// CGO_CFLAGS and CGO_LDFLAGS.
package tern
