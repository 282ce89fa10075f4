package tern

// #include "shim.h"
import "C"

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Head is the head of a response: what Response and StreamResponse share.
type Head struct {
	// Status is e.g. "200 OK" (the standard reason phrase); StatusCode is 200.
	Status     string
	StatusCode int
	// Proto is "HTTP/1.1" or "HTTP/2.0", as in net/http.
	Proto      string
	ProtoMajor int
	ProtoMinor int
	// Header holds the response headers under canonical keys (tern gives them in
	// lower case). With decoding on, Content-Encoding and Content-Length of an
	// encoded body are removed.
	Header http.Header
	// EffectiveURL is the URL of the final request after redirects, user info
	// redacted; Redirects is how many were followed.
	EffectiveURL string
	Redirects    int
	// RemoteAddr is "ip:port" of the final connection (the proxy's, through one).
	RemoteAddr string
	// ID is tern's id of the request.
	ID uint64
	// Timing: phases of a new connection (zero on a reused one), time to first
	// byte and total (for a StreamResponse, known when its head arrived).
	Timing Timing
}

// Timing is tern's per-request timing.
type Timing struct {
	DNS, Connect, TLS, TTFB, Total time.Duration
}

// Response is a response whose body was read whole (Session.Do).
type Response struct {
	Head
	// Body is the whole (decoded) body.
	Body []byte
}

// headFrom reads the head of a tern_response (valid during the call only).
func headFrom(resp *C.tern_response) Head {
	status := int(C.tern_response_status(resp))
	v := int(C.tern_response_version(resp))
	h := Head{
		StatusCode:   status,
		Status:       strings.TrimSpace(strconv.Itoa(status) + " " + http.StatusText(status)),
		ProtoMajor:   v / 10,
		ProtoMinor:   v % 10,
		Header:       make(http.Header),
		EffectiveURL: C.GoString(C.tern_response_effective_url(resp)),
		Redirects:    int(C.tern_response_redirect_count(resp)),
		RemoteAddr:   C.GoString(C.tern_response_remote_addr(resp)),
		ID:           uint64(C.tern_response_id(resp)),
	}
	if v != 0 {
		h.Proto = fmt.Sprintf("HTTP/%d.%d", h.ProtoMajor, h.ProtoMinor)
	}
	n := C.tern_response_header_count(resp)
	for i := C.size_t(0); i < n; i++ {
		var name *C.char
		var nameLen C.size_t
		var value *C.uint8_t
		var valueLen C.size_t
		if C.tern_response_header_at(resp, i, &name, &nameLen, &value, &valueLen) != C.TERN_CODE_OK {
			break
		}
		k := http.CanonicalHeaderKey(C.GoStringN(name, C.int(nameLen)))
		h.Header[k] = append(h.Header[k], C.GoStringN((*C.char)(unsafe.Pointer(value)), C.int(valueLen)))
	}
	us := func(kind C.uint32_t) time.Duration {
		return time.Duration(C.tern_response_timing_us(resp, kind)) * time.Microsecond
	}
	h.Timing = Timing{
		DNS:     us(C.TERN_TIMING_DNS),
		Connect: us(C.TERN_TIMING_CONNECT),
		TLS:     us(C.TERN_TIMING_TLS),
		TTFB:    us(C.TERN_TIMING_TTFB),
		Total:   us(C.TERN_TIMING_TOTAL),
	}
	return h
}

// outcome reads the code and message of a completed tern_response.
func outcome(resp *C.tern_response) (Code, string) {
	code := Code(C.tern_response_code(resp))
	msg := ""
	if code != CodeOK {
		msg = C.GoString(C.tern_response_message(resp))
	}
	return code, msg
}

// bodyBytes copies the body of a completed tern_response.
func bodyBytes(resp *C.tern_response) []byte {
	var p *C.uint8_t
	var n C.size_t
	if C.tern_response_body(resp, &p, &n) != C.TERN_CODE_OK || n == 0 {
		return []byte{}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))...)
}
