package tern

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
)

// Code is one of tern's outcome codes (tern_code): 0 is success, 1-99 caller errors,
// 100s DNS, 200s connect, 300s TLS, 400s proxy, 500s time-outs, 600s protocol, 700s
// lifecycle, 800s WebSocket, 900s internal. An HTTP 404 or 500 is not an error.
type Code uint32

// The codes of tern.h, by the same names.
const (
	CodeOK                        Code = C.TERN_CODE_OK
	CodeNullArgument              Code = C.TERN_CODE_NULL_ARGUMENT
	CodeInvalidArgument           Code = C.TERN_CODE_INVALID_ARGUMENT
	CodeInvalidURL                Code = C.TERN_CODE_INVALID_URL
	CodeUnsupportedScheme         Code = C.TERN_CODE_UNSUPPORTED_SCHEME
	CodeInvalidHeader             Code = C.TERN_CODE_INVALID_HEADER
	CodeInvalidMethod             Code = C.TERN_CODE_INVALID_METHOD
	CodeInvalidState              Code = C.TERN_CODE_INVALID_STATE
	CodeWouldDeadlock             Code = C.TERN_CODE_WOULD_DEADLOCK
	CodeForked                    Code = C.TERN_CODE_FORKED
	CodeNotFound                  Code = C.TERN_CODE_NOT_FOUND
	CodeUnsupported               Code = C.TERN_CODE_UNSUPPORTED
	CodeInvalidFile               Code = C.TERN_CODE_INVALID_FILE
	CodeWouldBlock                Code = C.TERN_CODE_WOULD_BLOCK
	CodeDNS                       Code = C.TERN_CODE_DNS
	CodeDNSNotFound               Code = C.TERN_CODE_DNS_NOT_FOUND
	CodeConnect                   Code = C.TERN_CODE_CONNECT
	CodeConnectionRefused         Code = C.TERN_CODE_CONNECTION_REFUSED
	CodeConnectionReset           Code = C.TERN_CODE_CONNECTION_RESET
	CodeTLS                       Code = C.TERN_CODE_TLS
	CodeTLSVerify                 Code = C.TERN_CODE_TLS_VERIFY
	CodeProxy                     Code = C.TERN_CODE_PROXY
	CodeProxyConnect              Code = C.TERN_CODE_PROXY_CONNECT
	CodeProxyAuth                 Code = C.TERN_CODE_PROXY_AUTH
	CodeTimeoutConnect            Code = C.TERN_CODE_TIMEOUT_CONNECT
	CodeTimeoutRead               Code = C.TERN_CODE_TIMEOUT_READ
	CodeTimeoutTotal              Code = C.TERN_CODE_TIMEOUT_TOTAL
	CodeTimeoutHeartbeat          Code = C.TERN_CODE_TIMEOUT_HEARTBEAT
	CodeTimeoutClose              Code = C.TERN_CODE_TIMEOUT_CLOSE
	CodeProtocol                  Code = C.TERN_CODE_PROTOCOL
	CodeIncompleteBody            Code = C.TERN_CODE_INCOMPLETE_BODY
	CodeHeadersTooLarge           Code = C.TERN_CODE_HEADERS_TOO_LARGE
	CodeTooManyRedirects          Code = C.TERN_CODE_TOO_MANY_REDIRECTS
	CodeBodyTooLarge              Code = C.TERN_CODE_BODY_TOO_LARGE
	CodeRedirectBodyNotReplayable Code = C.TERN_CODE_REDIRECT_BODY_NOT_REPLAYABLE
	CodeInsecureRedirect          Code = C.TERN_CODE_INSECURE_REDIRECT
	CodeDecoding                  Code = C.TERN_CODE_DECODING
	CodeCanceled                  Code = C.TERN_CODE_CANCELED
	CodeShutdown                  Code = C.TERN_CODE_SHUTDOWN
	CodeWSHandshake               Code = C.TERN_CODE_WS_HANDSHAKE
	CodeWSProtocol                Code = C.TERN_CODE_WS_PROTOCOL
	CodeWSInvalidUTF8             Code = C.TERN_CODE_WS_INVALID_UTF8
	CodeWSMessageTooLarge         Code = C.TERN_CODE_WS_MESSAGE_TOO_LARGE
	CodeWSClosedAbnormally        Code = C.TERN_CODE_WS_CLOSED_ABNORMALLY
	CodeInternal                  Code = C.TERN_CODE_INTERNAL
)

// String is tern's name of the code without its prefix ("TIMEOUT_TOTAL"), or
// "UNKNOWN".
func (c Code) String() string {
	return C.GoString(C.tern_code_name(C.uint32_t(c)))
}

// Error is a failure reported by tern: its code and message (secrets redacted). Match
// it with errors.Is against the sentinels (errors.Is(err, tern.ErrTimeoutTotal)) or
// take it apart with errors.As. A request ended by its context also wraps the
// context's error (errors.Is(err, context.Canceled) holds as well as
// errors.Is(err, tern.ErrCanceled)); one whose request body's Read failed wraps that
// error.
type Error struct {
	Code Code
	Msg  string

	cause error
}

func (e *Error) Error() string {
	s := "tern: " + e.Code.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Is reports whether target is an *Error with the same code (the sentinels carry
// only a code), or ErrTimeout and e is any time-out.
func (e *Error) Is(target error) bool {
	if target == ErrTimeout {
		return e.Timeout()
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the context error or body read error that caused e, if any.
func (e *Error) Unwrap() error { return e.cause }

// Timeout reports whether e is a time-out: one of tern's (connect, read, total) or
// the request context's deadline. With Temporary, *Error satisfies net.Error.
func (e *Error) Timeout() bool {
	return (e.Code >= 500 && e.Code < 600) || errors.Is(e.cause, context.DeadlineExceeded)
}

// Temporary reports whether retrying may help: time-outs and connection resets.
func (e *Error) Temporary() bool {
	return e.Timeout() || e.Code == CodeConnectionReset
}

// Sentinels, one per code, for errors.Is.
var (
	ErrNullArgument              = &Error{Code: CodeNullArgument}
	ErrInvalidArgument           = &Error{Code: CodeInvalidArgument}
	ErrInvalidURL                = &Error{Code: CodeInvalidURL}
	ErrUnsupportedScheme         = &Error{Code: CodeUnsupportedScheme}
	ErrInvalidHeader             = &Error{Code: CodeInvalidHeader}
	ErrInvalidMethod             = &Error{Code: CodeInvalidMethod}
	ErrInvalidState              = &Error{Code: CodeInvalidState}
	ErrWouldDeadlock             = &Error{Code: CodeWouldDeadlock}
	ErrForked                    = &Error{Code: CodeForked}
	ErrNotFound                  = &Error{Code: CodeNotFound}
	ErrUnsupported               = &Error{Code: CodeUnsupported}
	ErrInvalidFile               = &Error{Code: CodeInvalidFile}
	ErrWouldBlock                = &Error{Code: CodeWouldBlock}
	ErrDNS                       = &Error{Code: CodeDNS}
	ErrDNSNotFound               = &Error{Code: CodeDNSNotFound}
	ErrConnect                   = &Error{Code: CodeConnect}
	ErrConnectionRefused         = &Error{Code: CodeConnectionRefused}
	ErrConnectionReset           = &Error{Code: CodeConnectionReset}
	ErrTLS                       = &Error{Code: CodeTLS}
	ErrTLSVerify                 = &Error{Code: CodeTLSVerify}
	ErrProxy                     = &Error{Code: CodeProxy}
	ErrProxyConnect              = &Error{Code: CodeProxyConnect}
	ErrProxyAuth                 = &Error{Code: CodeProxyAuth}
	ErrTimeoutConnect            = &Error{Code: CodeTimeoutConnect}
	ErrTimeoutRead               = &Error{Code: CodeTimeoutRead}
	ErrTimeoutTotal              = &Error{Code: CodeTimeoutTotal}
	ErrTimeoutHeartbeat          = &Error{Code: CodeTimeoutHeartbeat}
	ErrTimeoutClose              = &Error{Code: CodeTimeoutClose}
	ErrProtocol                  = &Error{Code: CodeProtocol}
	ErrIncompleteBody            = &Error{Code: CodeIncompleteBody}
	ErrHeadersTooLarge           = &Error{Code: CodeHeadersTooLarge}
	ErrTooManyRedirects          = &Error{Code: CodeTooManyRedirects}
	ErrBodyTooLarge              = &Error{Code: CodeBodyTooLarge}
	ErrRedirectBodyNotReplayable = &Error{Code: CodeRedirectBodyNotReplayable}
	ErrInsecureRedirect          = &Error{Code: CodeInsecureRedirect}
	ErrDecoding                  = &Error{Code: CodeDecoding}
	ErrCanceled                  = &Error{Code: CodeCanceled}
	ErrShutdown                  = &Error{Code: CodeShutdown}
	ErrWSHandshake               = &Error{Code: CodeWSHandshake}
	ErrWSProtocol                = &Error{Code: CodeWSProtocol}
	ErrWSInvalidUTF8             = &Error{Code: CodeWSInvalidUTF8}
	ErrWSMessageTooLarge         = &Error{Code: CodeWSMessageTooLarge}
	ErrWSClosedAbnormally        = &Error{Code: CodeWSClosedAbnormally}
	ErrInternal                  = &Error{Code: CodeInternal}
)

// ErrTimeout matches every time-out: tern's connect, read and total time-outs and a
// context deadline that ended a request.
var ErrTimeout = errors.New("tern: time-out")

// ErrBodyClosed is returned by a StreamResponse body's Read after its Close.
var ErrBodyClosed = errors.New("tern: read on closed response body")

// takeError turns a tern_code and its optional tern_error into an *Error (nil for OK)
// and frees the tern_error.
func takeError(code C.tern_code, cerr *C.tern_error) error {
	if cerr != nil {
		defer C.tern_error_free(cerr)
	}
	if code == C.TERN_CODE_OK {
		return nil
	}
	e := &Error{Code: Code(code)}
	if cerr != nil {
		e.Msg = C.GoString(C.tern_error_message(cerr))
	}
	return e
}

// closedError is what calls on a closed session or runtime return.
func closedError(what string) error {
	return &Error{Code: CodeShutdown, Msg: what + " is closed"}
}
