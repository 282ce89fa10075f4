package tern

// #include "shim.h"
import "C"

import (
	"io"
	"sync"
)

const defaultStreamBuffer = 1 << 20

// StreamResponse is a response whose body is read as it arrives (Session.Stream).
type StreamResponse struct {
	Head
	// Body reads the (decoded) body; it returns io.EOF at its end, or the *Error
	// that ended the request. Close it when done: closing it early cancels the
	// request. Read and Close may be called from different goroutines.
	Body io.ReadCloser
}

// stream buffers the chunks on_data delivers until the reader takes them. on_data
// never blocks: past the limit it returns TERN_ACTION_PAUSE, and the reader resumes
// the request once it has drained half of the limit.
type stream struct {
	limit     int
	headReady chan struct{} // closed once head is set
	notify    chan struct{} // 1-buffered: data or the end arrived

	mu       sync.Mutex
	head     *Head
	chunks   [][]byte
	buffered int
	paused   bool
	closed   bool // the reader closed the body
	finished bool // on_complete ran
	code     Code
	msg      string

	pauses, maxBuffered int // for tests
}

func newStream(limit int) *stream {
	if limit <= 0 {
		limit = defaultStreamBuffer
	}
	return &stream{limit: limit, headReady: make(chan struct{}), notify: make(chan struct{}, 1)}
}

func (st *stream) wake() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

// headers runs in on_headers (a tern thread).
func (st *stream) headers(resp *C.tern_response) C.uint32_t {
	h := headFrom(resp)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return C.TERN_ACTION_CANCEL
	}
	if st.head == nil {
		st.head = &h
		close(st.headReady)
	}
	return C.TERN_ACTION_CONTINUE
}

// data runs in on_data (a tern thread); p is valid during the call only.
func (st *stream) data(p []byte) C.uint32_t {
	chunk := append([]byte(nil), p...)
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return C.TERN_ACTION_CANCEL
	}
	st.chunks = append(st.chunks, chunk)
	st.buffered += len(chunk)
	if st.buffered > st.maxBuffered {
		st.maxBuffered = st.buffered
	}
	action := C.uint32_t(C.TERN_ACTION_CONTINUE)
	if st.buffered >= st.limit {
		st.paused = true
		st.pauses++
		action = C.TERN_ACTION_PAUSE
	}
	st.mu.Unlock()
	st.wake()
	return action
}

// complete runs in on_complete (a tern thread); it frees resp (nil: never seen).
func (st *stream) complete(resp *C.tern_response) {
	code, msg := CodeInternal, "release before on_complete"
	var head *Head
	if resp != nil {
		code, msg = outcome(resp)
		st.mu.Lock()
		noHead := st.head == nil
		st.mu.Unlock()
		if code == CodeOK && noHead {
			h := headFrom(resp)
			head = &h
		}
		C.tern_response_free(resp)
	}
	st.mu.Lock()
	st.finished = true
	st.code, st.msg = code, msg
	if head != nil && st.head == nil {
		st.head = head
		close(st.headReady)
	}
	st.mu.Unlock()
	st.wake()
}

// streamBody is StreamResponse.Body.
type streamBody struct {
	c *call
}

func (b *streamBody) Read(p []byte) (int, error) {
	st := b.c.st
	for {
		st.mu.Lock()
		if st.closed {
			st.mu.Unlock()
			return 0, ErrBodyClosed
		}
		if st.buffered > 0 {
			if len(p) == 0 {
				st.mu.Unlock()
				return 0, nil
			}
			n := 0
			for n < len(p) && len(st.chunks) > 0 {
				k := copy(p[n:], st.chunks[0])
				n += k
				if k == len(st.chunks[0]) {
					st.chunks[0] = nil
					st.chunks = st.chunks[1:]
				} else {
					st.chunks[0] = st.chunks[0][k:]
				}
			}
			st.buffered -= n
			resume := st.paused && st.buffered <= st.limit/2
			if resume {
				st.paused = false
			}
			st.mu.Unlock()
			if resume {
				b.c.s.resume(b.c.id)
			}
			return n, nil
		}
		if st.finished {
			code, msg := st.code, st.msg
			st.mu.Unlock()
			if code == CodeOK {
				return 0, io.EOF
			}
			return 0, b.c.failure(code, msg)
		}
		st.mu.Unlock()
		select {
		case <-st.notify:
		case <-b.c.done:
		}
	}
}

// Close ends the body; a request still running is canceled.
func (b *streamBody) Close() error {
	st := b.c.st
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	st.chunks, st.buffered = nil, 0
	finished := st.finished
	st.mu.Unlock()
	if !finished {
		b.c.s.cancel(b.c.id)
	}
	return nil
}
