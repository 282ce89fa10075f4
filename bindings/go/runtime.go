package tern

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"sync"
	"unsafe"
)

// RuntimeOptions configures NewRuntime. The zero value gives tern's defaults.
type RuntimeOptions struct {
	// Workers is the number of tern worker threads; 0 means one per CPU.
	Workers int
	// ThreadName names the threads (at most 15 bytes show on Linux); "" means
	// "tern-worker".
	ThreadName string
}

// Runtime is tern's background runtime: the threads that run requests and
// callbacks. Make one per process (or a few), share it between sessions, and
// Close it last. It is safe for concurrent use.
type Runtime struct {
	mu       sync.RWMutex
	p        *C.tern_runtime // nil once closed
	sessions map[*Session]struct{}
}

// Version is the version of the linked libtern, for example "0.1.0".
func Version() string { return C.GoString(C.tern_version()) }

// NewRuntime starts a runtime. It fails with ErrUnsupported when the linked library
// does not match the header this package was built against.
func NewRuntime(opts RuntimeOptions) (*Runtime, error) {
	if err := takeError(C.tern_version_check(C.TERN_VERSION_MAJOR, C.TERN_VERSION_MINOR), nil); err != nil {
		return nil, &Error{Code: CodeUnsupported, Msg: "libtern " + Version() + " does not match tern.h"}
	}
	if opts.Workers < 0 || opts.Workers > 1<<16 {
		return nil, &Error{Code: CodeInvalidArgument, Msg: "Workers out of range"}
	}
	var cfg C.tern_runtime_config
	cfg.struct_size = C.size_t(unsafe.Sizeof(cfg))
	cfg.worker_threads = C.uint32_t(opts.Workers)
	if opts.ThreadName != "" {
		name := C.CString(opts.ThreadName)
		defer C.free(unsafe.Pointer(name))
		cfg.thread_name = name
	}
	var p *C.tern_runtime
	var cerr *C.tern_error
	if err := takeError(C.tern_runtime_new(&cfg, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Runtime{p: p, sessions: make(map[*Session]struct{})}, nil
}

// Close closes every session still open on the runtime (as Session.Close: requests
// in flight end with ErrShutdown), then stops the threads. Calling it again does
// nothing.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	if rt.p == nil {
		rt.mu.Unlock()
		return nil
	}
	open := make([]*Session, 0, len(rt.sessions))
	for s := range rt.sessions {
		open = append(open, s)
	}
	p := rt.p
	rt.p = nil // NewSession refuses from now on
	rt.mu.Unlock()

	for _, s := range open {
		s.Close()
	}
	C.tern_runtime_free(p)
	return nil
}

func (rt *Runtime) forget(s *Session) {
	rt.mu.Lock()
	delete(rt.sessions, s)
	rt.mu.Unlock()
}
