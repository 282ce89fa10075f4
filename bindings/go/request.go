package tern

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"
	"unsafe"
)

// Request is one HTTP request for Session.Do or Session.Stream. A Request may be
// sent again once its Body (if any) has been replaced.
type Request struct {
	// Method is an HTTP token; "" means GET.
	Method string
	// URL is an absolute http or https URL. User info is sent as Basic
	// authorization and never appears in messages.
	URL string
	// Header is added to the session's headers, replacing those of the same names.
	Header http.Header

	// Body is the request body, or nil. The bytes left in a *bytes.Buffer,
	// *bytes.Reader or *strings.Reader are copied and sent with a Content-Length
	// (such a request may be retried on a dead pooled connection and follows 307/308
	// redirects). Any other reader is streamed: tern calls Read on its blocking
	// thread pool while the request is sent (a Read may block), once, with no retry;
	// a 307/308 redirect is then returned, not followed. As with net/http, a Body
	// that is an io.Closer is closed once the request is done, also on error.
	Body io.Reader
	// ContentLength is the length of a streamed Body; 0 or -1 means unknown (sent
	// chunked with HTTP/1.1). NewRequest sets it for the in-memory readers.
	ContentLength int64

	// Per-request time-outs, overriding the session's: zero keeps the session's,
	// NoTimeout turns one off. A Context deadline also ends the request.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	ReadTimeout    time.Duration
	// HTTPVersion, when not HTTPAuto, overrides the session's.
	HTTPVersion HTTPVersion
}

// NewRequest makes a Request, like http.NewRequest: it checks the method and URL
// (ErrInvalidMethod, ErrInvalidURL, ErrUnsupportedScheme) and sets ContentLength
// for a *bytes.Buffer, *bytes.Reader or *strings.Reader body.
func NewRequest(method, url string, body io.Reader) (*Request, error) {
	req := &Request{Method: method, URL: url, Header: make(http.Header), Body: body}
	switch b := body.(type) {
	case *bytes.Buffer:
		req.ContentLength = int64(b.Len())
	case *bytes.Reader:
		req.ContentLength = int64(b.Len())
	case *strings.Reader:
		req.ContentLength = int64(b.Len())
	}
	rq, err := req.newC()
	if err != nil {
		return nil, err
	}
	C.tern_request_free(rq)
	return req, nil
}

func (r *Request) method() string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// newC makes the tern_request with the method, URL, headers and options (no body).
func (r *Request) newC() (*C.tern_request, error) {
	var cs cstrings
	defer cs.free()
	var rq *C.tern_request
	var cerr *C.tern_error
	if err := takeError(C.tern_request_new(cs.str(r.method()), cs.str(r.URL), &rq, &cerr), cerr); err != nil {
		return nil, err
	}
	set := optionSetter{}
	for _, k := range sortedKeys(r.Header) {
		for _, v := range r.Header[k] {
			name, value := cs.str(k), cs.str(v)
			set.call("Header", func(e **C.tern_error) C.tern_code { return C.tern_request_add_header(rq, name, value, e) })
		}
	}
	for _, t := range []struct {
		kind C.uint32_t
		d    time.Duration
		name string
	}{
		{C.TERN_TIMEOUT_TOTAL, r.Timeout, "Timeout"},
		{C.TERN_TIMEOUT_CONNECT, r.ConnectTimeout, "ConnectTimeout"},
		{C.TERN_TIMEOUT_READ, r.ReadTimeout, "ReadTimeout"},
	} {
		if ms, ok := durationMS(t.d); ok {
			kind := t.kind
			set.call(t.name, func(e **C.tern_error) C.tern_code { return C.tern_request_set_timeout_ms(rq, kind, ms, e) })
		}
	}
	if r.HTTPVersion != HTTPAuto {
		set.call("HTTPVersion", func(e **C.tern_error) C.tern_code {
			return C.tern_request_set_http_version(rq, C.uint32_t(r.HTTPVersion), e)
		})
	}
	if set.err != nil {
		C.tern_request_free(rq)
		return nil, set.err
	}
	return rq, nil
}

// inMemory returns the unread bytes of the readers whose contents can be copied.
func inMemory(body io.Reader) ([]byte, bool) {
	switch b := body.(type) {
	case *bytes.Buffer:
		return b.Next(b.Len()), true
	case *bytes.Reader, *strings.Reader:
		data, err := io.ReadAll(body)
		return data, err == nil
	}
	return nil, false
}

// setBody attaches r.Body to rq: copied, or streamed through a body reader whose
// handle tern releases (also when rq is freed unsent). On failure rq is freed.
func (r *Request) setBody(rq *C.tern_request, c *call) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	var cerr *C.tern_error
	if data, ok := inMemory(r.Body); ok {
		var p *C.uint8_t
		if len(data) > 0 {
			p = (*C.uint8_t)(unsafe.Pointer(&data[0])) // copied by tern during the call
		}
		if err := takeError(C.tern_request_set_body(rq, p, C.size_t(len(data)), &cerr), cerr); err != nil {
			C.tern_request_free(rq)
			return err
		}
		return nil
	}
	length := r.ContentLength
	if length <= 0 {
		length = -1
	}
	h := newHandle(&bodyReader{r: r.Body, c: c})
	if err := takeError(C.terngo_set_body_reader(rq, C.int64_t(length), C.uintptr_t(h), &cerr), cerr); err != nil {
		deleteHandle(h) // refused: release will not run
		C.tern_request_free(rq)
		return err
	}
	return nil
}
