package tern

// #include "shim.h"
import "C"

import (
	"context"
	"fmt"
	"io"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Every request tern accepts carries a cgo.Handle to its *call as user_data, and a
// streamed request body another to its *bodyReader. A handle is deleted exactly once:
// by the matching release callback, or by the Go side when tern refused the request
// (or the body reader), in which case no callback runs. No Go pointer is stored in C
// memory. liveHandles counts the handles not yet deleted, so tests can check that
// none leak.
var (
	liveHandles    atomic.Int64
	callbackFaults atomic.Int64 // exactly-once violations or panics caught in callbacks
	lastFault      atomic.Value // string
)

func newHandle(v any) cgo.Handle {
	liveHandles.Add(1)
	return cgo.NewHandle(v)
}

func deleteHandle(h cgo.Handle) {
	h.Delete()
	liveHandles.Add(-1)
}

func fault(msg string) {
	callbackFaults.Add(1)
	lastFault.Store(msg)
}

// call is the Go side of one request sent with tern_session_send.
type call struct {
	s    *Session
	ctx  context.Context
	body io.Reader // the request body, closed when the request is done
	id   uint64    // written after send returns, before any Go reader uses it

	done                chan struct{}    // closed by on_complete
	resp                *C.tern_response // buffered: handed over by on_complete, freed by Do
	st                  *stream          // streaming only
	completed, released atomic.Bool

	closeOnce sync.Once
	readMu    sync.Mutex
	readErr   error // why the body reader aborted the request
}

func (c *call) setReadErr(err error) {
	// A Read that fails after the request completed did not cause its outcome: it is
	// the body being closed after a cancel (a pipe gives io.ErrClosedPipe).
	if c.completed.Load() {
		return
	}
	c.readMu.Lock()
	if c.readErr == nil {
		c.readErr = err
	}
	c.readMu.Unlock()
}

func (c *call) closeBody() {
	c.closeOnce.Do(func() {
		if cl, ok := c.body.(io.Closer); ok {
			cl.Close()
		}
	})
}

// failure is the error of a request that completed with code: a cancel caused by a
// failed body Read or by the context wraps that cause.
func (c *call) failure(code Code, msg string) error {
	e := &Error{Code: code, Msg: msg}
	if code == CodeCanceled {
		c.readMu.Lock()
		e.cause = c.readErr
		c.readMu.Unlock()
		if e.cause == nil {
			e.cause = c.ctx.Err()
		}
	}
	return e
}

// bodyReader is the Go side of a request body read by tern_request_set_body_reader.
type bodyReader struct {
	r        io.Reader
	c        *call
	released atomic.Bool
}

//export terngoOnComplete
func terngoOnComplete(h C.uintptr_t, resp *C.tern_response) {
	defer catch("on_complete")
	c := cgo.Handle(h).Value().(*call)
	if !c.completed.CompareAndSwap(false, true) {
		fault("on_complete ran twice")
		C.tern_response_free(resp)
		return
	}
	if c.st != nil {
		c.st.complete(resp) // reads what it needs and frees resp
		close(c.done)
		if _, ok := c.body.(io.Closer); ok {
			go c.closeBody() // a user Close may block: not on a tern thread
		}
		return
	}
	c.resp = resp
	close(c.done)
}

//export terngoOnHeaders
func terngoOnHeaders(h C.uintptr_t, head *C.tern_response) (action C.uint32_t) {
	action = C.TERN_ACTION_CANCEL // if anything below panics
	defer catch("on_headers")
	c := cgo.Handle(h).Value().(*call)
	return c.st.headers(head)
}

//export terngoOnData
func terngoOnData(h C.uintptr_t, data *C.uint8_t, n C.size_t) (action C.uint32_t) {
	action = C.TERN_ACTION_CANCEL // if anything below panics
	defer catch("on_data")
	c := cgo.Handle(h).Value().(*call)
	return c.st.data(unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)))
}

//export terngoRelease
func terngoRelease(h C.uintptr_t) {
	defer catch("release")
	handle := cgo.Handle(h)
	c := handle.Value().(*call)
	if !c.released.CompareAndSwap(false, true) {
		fault("release ran twice")
		return
	}
	if c.completed.CompareAndSwap(false, true) {
		// Never seen: release without on_complete. Unblock the waiter.
		fault("release before on_complete")
		if c.st != nil {
			c.st.complete(nil)
		}
		close(c.done)
	}
	deleteHandle(handle)
	c.s.flights.done()
}

//export terngoBodyRead
func terngoBodyRead(h C.uintptr_t, buf *C.uint8_t, capacity C.size_t, written *C.size_t) (status C.uint32_t) {
	*written = 0
	var br *bodyReader
	defer func() {
		if r := recover(); r != nil {
			if br != nil { // the user's Read panicked
				br.c.setReadErr(fmt.Errorf("request body Read panicked: %v", r))
			} else {
				fault(fmt.Sprintf("body read: %v", r))
			}
			*written = 0
			status = C.TERN_READ_STATUS_ABORT
		}
	}()
	br = cgo.Handle(h).Value().(*bodyReader)
	p := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(capacity))
	n, err := br.r.Read(p)
	if n < 0 || n > len(p) {
		br.c.setReadErr(fmt.Errorf("request body Read returned %d for a buffer of %d", n, len(p)))
		return C.TERN_READ_STATUS_ABORT
	}
	*written = C.size_t(n)
	switch {
	case err == io.EOF:
		return C.TERN_READ_STATUS_END
	case err != nil:
		br.c.setReadErr(err)
		*written = 0
		return C.TERN_READ_STATUS_ABORT
	}
	return C.TERN_READ_STATUS_DATA
}

//export terngoBodyRelease
func terngoBodyRelease(h C.uintptr_t) {
	defer catch("body release")
	handle := cgo.Handle(h)
	br := handle.Value().(*bodyReader)
	if !br.released.CompareAndSwap(false, true) {
		fault("body release ran twice")
		return
	}
	deleteHandle(handle)
}

// catch keeps a panic from unwinding into tern: it is counted, not propagated.
func catch(where string) {
	if r := recover(); r != nil {
		fault(fmt.Sprintf("%s: %v", where, r))
	}
}
