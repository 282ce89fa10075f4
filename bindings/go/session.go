package tern

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// Session holds a configuration and a connection pool; requests through one
// session share connections (HTTP/1.1 keep-alive, HTTP/2 multiplexing). It is safe
// for concurrent use by any number of goroutines. Close it when done.
type Session struct {
	rt        *Runtime
	streamBuf int
	flights   flights

	mu sync.RWMutex
	p  *C.tern_session // nil once closed
}

// flights counts the requests tern accepted and has not released yet.
type flights struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (f *flights) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *flights) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		for _, w := range f.waiters {
			close(w)
		}
		f.waiters = nil
	}
	f.mu.Unlock()
}

// idle is closed once no request is in flight.
func (f *flights) idle() <-chan struct{} {
	ch := make(chan struct{})
	f.mu.Lock()
	if f.n == 0 {
		close(ch)
	} else {
		f.waiters = append(f.waiters, ch)
	}
	f.mu.Unlock()
	return ch
}

// NewSession makes a session on rt.
func NewSession(rt *Runtime, opts SessionOptions) (*Session, error) {
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.tern_session_options_free(copts)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.p == nil {
		return nil, closedError("runtime")
	}
	var p *C.tern_session
	var cerr *C.tern_error
	if err := takeError(C.tern_session_new(rt.p, copts, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	s := &Session{rt: rt, p: p, streamBuf: opts.StreamBufferSize}
	rt.sessions[s] = struct{}{}
	return s, nil
}

// Close aborts the requests in flight (they fail with ErrShutdown; a blocked Do
// returns), waits until tern has released every one of them, and frees the
// session. New requests fail with ErrShutdown. Calling it again does nothing. Do
// not call it from a request body's Read.
func (s *Session) Close() error {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p != nil {
		C.tern_session_close(p, C.TERN_CLOSE_ABORT, nil)
		C.tern_session_free(p)
		s.rt.forget(s)
	}
	<-s.flights.idle()
	return nil
}

// Shutdown closes the session gracefully: new requests fail with ErrShutdown,
// requests in flight run to their end, then the session is freed (as Close). If
// ctx ends first, Shutdown returns its error and leaves the requests running; call
// Close to abort them.
func (s *Session) Shutdown(ctx context.Context) error {
	s.mu.RLock()
	if s.p != nil {
		C.tern_session_close(s.p, C.TERN_CLOSE_GRACEFUL, nil)
	}
	s.mu.RUnlock()
	select {
	case <-s.flights.idle():
		return s.Close()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Session) cancel(id uint64) {
	s.mu.RLock()
	if s.p != nil {
		C.tern_session_cancel(s.p, C.uint64_t(id))
	}
	s.mu.RUnlock()
}

func (s *Session) resume(id uint64) {
	s.mu.RLock()
	if s.p != nil {
		C.tern_session_resume(s.p, C.uint64_t(id))
	}
	s.mu.RUnlock()
}

// send hands req to tern. On error no callback will run and the body is closed.
func (s *Session) send(ctx context.Context, req *Request, streaming bool) (*call, error) {
	c := &call{s: s, ctx: ctx, body: req.Body, done: make(chan struct{})}
	if streaming {
		c.st = newStream(s.streamBuf)
	}
	if err := ctx.Err(); err != nil {
		c.closeBody()
		return nil, &Error{Code: CodeCanceled, Msg: "context done before the request was sent", cause: err}
	}
	rq, err := req.newC()
	if err != nil {
		c.closeBody()
		return nil, err
	}
	if err := req.setBody(rq, c); err != nil { // frees rq on error
		c.closeBody()
		return nil, err
	}
	h := newHandle(c)
	var id C.uint64_t
	var cerr *C.tern_error
	s.mu.RLock()
	if s.p == nil {
		s.mu.RUnlock()
		C.tern_request_free(rq)
		deleteHandle(h)
		c.closeBody()
		return nil, closedError("session")
	}
	s.flights.add() // before send: release may run before send returns
	stream := C.int(0)
	if streaming {
		stream = 1
	}
	code := C.terngo_send(s.p, rq, stream, C.uintptr_t(h), &id, &cerr)
	s.mu.RUnlock()
	if err := takeError(code, cerr); err != nil {
		// Refused: tern freed rq (and released its body reader); h is still ours.
		s.flights.done()
		deleteHandle(h)
		c.closeBody()
		return nil, err
	}
	c.id = uint64(id)
	return c, nil
}

// Do sends req and returns the response with its whole body. An HTTP error status
// is not an error. When ctx ends first, the request is canceled and Do returns an
// *Error with code CodeCanceled that wraps ctx.Err().
func (s *Session) Do(ctx context.Context, req *Request) (*Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := s.send(ctx, req, false)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		s.cancel(c.id) // completes at once (CANCELED) unless it already completed
		<-c.done
	}
	c.closeBody()
	resp := c.resp
	c.resp = nil
	if resp == nil {
		return nil, &Error{Code: CodeInternal, Msg: "request released without a response"}
	}
	defer C.tern_response_free(resp)
	if code, msg := outcome(resp); code != CodeOK {
		return nil, c.failure(code, msg)
	}
	return &Response{Head: headFrom(resp), Body: bodyBytes(resp)}, nil
}

// Stream sends req and returns once the response head has arrived; the body is
// read from the returned Body as it arrives, with back-pressure (see
// SessionOptions.StreamBufferSize). Ending ctx cancels the request, also while the
// body is being read. Close the Body.
func (s *Session) Stream(ctx context.Context, req *Request) (*StreamResponse, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := s.send(ctx, req, true)
	if err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				s.cancel(c.id)
			case <-c.done:
			}
		}()
	}
	select {
	case <-c.st.headReady:
	case <-c.done:
	}
	st := c.st
	st.mu.Lock()
	head, code, msg := st.head, st.code, st.msg
	st.mu.Unlock()
	if head == nil { // ended before a head arrived
		return nil, c.failure(code, msg)
	}
	return &StreamResponse{Head: *head, Body: &streamBody{c: c}}, nil
}

// Get is Do with a GET request for url.
func (s *Session) Get(ctx context.Context, url string) (*Response, error) {
	return s.Do(ctx, &Request{Method: http.MethodGet, URL: url})
}

// Post is Do with a POST request for url with body and a Content-Type.
func (s *Session) Post(ctx context.Context, url, contentType string, body io.Reader) (*Response, error) {
	req, err := NewRequest(http.MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return s.Do(ctx, req)
}

// withSession runs f with the live session pointer, or fails when closed.
func (s *Session) withSession(f func(p *C.tern_session, cerr **C.tern_error) C.tern_code) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.p == nil {
		return closedError("session")
	}
	var cerr *C.tern_error
	return takeError(f(s.p, &cerr), cerr)
}

// AddCookie stores a cookie in the session's jar (SessionOptions.CookieJar) as if
// url had answered "Set-Cookie: <setCookie>".
func (s *Session) AddCookie(url, setCookie string) error {
	var cs cstrings
	defer cs.free()
	u, v := cs.str(url), cs.str(setCookie)
	return s.withSession(func(p *C.tern_session, e **C.tern_error) C.tern_code {
		return C.tern_session_add_cookie(p, u, v, e)
	})
}

// Cookies returns the Cookie header tern would send to url now ("a=1; b=2"), or "".
func (s *Session) Cookies(url string) (string, error) {
	var cs cstrings
	defer cs.free()
	u := cs.str(url)
	var out *C.char
	err := s.withSession(func(p *C.tern_session, e **C.tern_error) C.tern_code {
		return C.tern_session_get_cookies(p, u, &out, e)
	})
	if err != nil {
		return "", err
	}
	defer C.tern_string_free(out)
	return C.GoString(out), nil
}

// ClearCookies empties the session's jar.
func (s *Session) ClearCookies() error {
	return s.withSession(func(p *C.tern_session, e **C.tern_error) C.tern_code {
		return C.tern_session_clear_cookies(p, e)
	})
}
