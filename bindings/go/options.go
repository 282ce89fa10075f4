package tern

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"net/http"
	"sort"
	"strings"
	"time"
	"unsafe"
)

// NoTimeout, given as a time-out, turns it off (a zero time-out keeps tern's
// default).
const NoTimeout time.Duration = -1

// HTTPVersion is the HTTP version a session or request uses.
type HTTPVersion uint32

const (
	// HTTPAuto: HTTP/2 when TLS ALPN agrees, else HTTP/1.1. The default.
	HTTPAuto HTTPVersion = C.TERN_HTTP_VERSION_AUTO
	// HTTP1: HTTP/1.1 only.
	HTTP1 HTTPVersion = C.TERN_HTTP_VERSION_HTTP1
	// HTTP2PriorKnowledge: HTTP/2 only (h2c on plain http, ALPN "h2" over TLS).
	HTTP2PriorKnowledge HTTPVersion = C.TERN_HTTP_VERSION_HTTP2_PRIOR_KNOWLEDGE
)

// TLSVersion bounds the TLS versions a session accepts.
type TLSVersion uint32

const (
	TLSDefault TLSVersion = C.TERN_TLS_VERSION_DEFAULT // no bound
	TLS12      TLSVersion = C.TERN_TLS_VERSION_TLS12
	TLS13      TLSVersion = C.TERN_TLS_VERSION_TLS13
)

// IPFamily limits the address families a session connects to.
type IPFamily uint32

const (
	IPAny IPFamily = C.TERN_IP_FAMILY_ANY // both, with Happy Eyeballs (default)
	IPv4  IPFamily = C.TERN_IP_FAMILY_V4
	IPv6  IPFamily = C.TERN_IP_FAMILY_V6
)

// SessionOptions configures NewSession. The zero value gives tern's defaults: TLS
// verified against the system's roots, total time-out 300 s, connect 30 s,
// redirects followed (at most 10), gzip/deflate/br decoded, idle connections kept
// 30 s (32 per host). Names follow net/http's Transport where there is one.
//
// Callbacks always run on tern's runtime threads (TERN_DELIVERY_RUNTIME_THREAD);
// the binding hands their results to goroutines without ever blocking those threads.
type SessionOptions struct {
	// Time-outs: Timeout from send to the last body byte, redirects included;
	// ConnectTimeout per connection (DNS, TCP, TLS); ReadTimeout the longest wait for
	// the next byte. Zero keeps tern's default (300 s, 30 s, off); NoTimeout turns
	// one off. Millisecond resolution, rounded up.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	ReadTimeout    time.Duration

	// Header is sent with every request; a name here replaces tern's default of
	// that name (user-agent). A request's own header of a name replaces these.
	Header http.Header
	// UserAgent, when set, replaces "tern/<version>".
	UserAgent string

	// CAFile, CAPEM and CADir add trusted CA certificates (PEM) to the system's
	// roots, which NoSystemRoots leaves out.
	CAFile        string
	CAPEM         []byte
	CADir         string
	NoSystemRoots bool
	// ClientCertFile and ClientKeyFile (PEM) are the client certificate for mutual TLS.
	ClientCertFile string
	ClientKeyFile  string
	// InsecureSkipVerify accepts any server certificate (DANGER; each response's
	// message says so). InsecureSkipHostnameVerify accepts another host's
	// certificate whose chain verifies.
	InsecureSkipVerify         bool
	InsecureSkipHostnameVerify bool
	// MinTLSVersion and MaxTLSVersion bound the TLS version (default 1.2 to 1.3).
	MinTLSVersion TLSVersion
	MaxTLSVersion TLSVersion
	// DisableSNI leaves the server name out of the TLS handshake.
	DisableSNI bool

	// Proxy is the proxy URL (http://, https://, socks5://, socks5h://), with
	// optional user info; ProxyUser and ProxyPassword override the URL's.
	Proxy         string
	ProxyUser     string
	ProxyPassword string
	// NoProxy lists hosts reached directly, as curl's NO_PROXY.
	NoProxy string
	// ProxyFromEnvironment reads HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY
	// (when Proxy is empty), once, in NewSession.
	ProxyFromEnvironment bool
	// ProxyConnectHeader is sent on CONNECT requests to the proxy only.
	ProxyConnectHeader http.Header

	// HTTPVersion chooses HTTP/1.1, HTTP/2 or ALPN (default).
	HTTPVersion HTTPVersion
	// DisableCompression turns off Accept-Encoding and decoding.
	DisableCompression bool
	// DisableRedirects returns 3xx responses instead of following them;
	// MaxRedirects bounds the redirects followed (0 means tern's default, 10).
	DisableRedirects bool
	MaxRedirects     int
	// AllowHTTPSDowngrade follows redirects from https to http (DANGER).
	AllowHTTPSDowngrade bool
	// MaxBodySize fails a buffered body larger than this (bytes; 0 = no limit) with
	// ErrBodyTooLarge. MaxResponseHeaderBytes bounds the head (default 100 KiB).
	MaxBodySize            int64
	MaxResponseHeaderBytes int

	// MaxConns and MaxConnsPerHost bound open connections (0 = no limit); requests
	// beyond wait in order.
	MaxConns        int
	MaxConnsPerHost int
	// IdleConnTimeout is how long an idle connection is kept (zero: 30 s; NoTimeout:
	// until the server closes it); MaxIdleConnsPerHost how many per host (zero: 32).
	// DisableKeepAlives keeps none.
	IdleConnTimeout     time.Duration
	MaxIdleConnsPerHost int
	DisableKeepAlives   bool

	// Nameservers ("ip[:port]") replace the system resolver. Resolve entries
	// ("host:port:addr[,addr...]") win over every resolver, as curl's --resolve.
	Nameservers []string
	Resolve     []string
	// IPFamily limits connections to IPv4 or IPv6.
	IPFamily IPFamily
	// DNSCacheTTL bounds how long answers are cached (zero: 60 s; NoTimeout: no
	// cache).
	DNSCacheTTL time.Duration

	// CookieJar keeps the cookies of responses and sends them back (RFC 6265); see
	// Session.Cookies, AddCookie and ClearCookies.
	CookieJar bool

	// StreamBufferSize is how many bytes of a streamed body (Session.Stream) are
	// buffered for the reader before tern stops reading the socket until the
	// reader has drained half of them. Zero means 1 MiB.
	StreamBufferSize int
}

// durationMS converts a time-out: 0 keeps the default (ok false), NoTimeout (any
// negative) gives 0 (off), others are rounded up to whole milliseconds.
func durationMS(d time.Duration) (ms C.uint64_t, ok bool) {
	switch {
	case d == 0:
		return 0, false
	case d < 0:
		return 0, true
	default:
		return C.uint64_t((d + time.Millisecond - 1) / time.Millisecond), true
	}
}

func boolU32(b bool) C.uint32_t {
	if b {
		return 1
	}
	return 0
}

// optionSetter collects the first error of a chain of option calls.
type optionSetter struct {
	err  error
	what string
}

func (o *optionSetter) call(what string, f func(**C.tern_error) C.tern_code) {
	if o.err != nil {
		return
	}
	var cerr *C.tern_error
	if err := takeError(f(&cerr), cerr); err != nil {
		if e, ok := err.(*Error); ok {
			e.Msg = what + ": " + e.Msg
		}
		o.err = err
	}
}

// cstrings holds C copies of Go strings until free.
type cstrings []*C.char

func (c *cstrings) str(s string) *C.char {
	p := C.CString(s)
	*c = append(*c, p)
	return p
}

func (c *cstrings) free() {
	for _, p := range *c {
		C.free(unsafe.Pointer(p))
	}
	*c = nil
}

// sortedKeys makes header order deterministic (maps are not ordered).
func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// build makes tern_session_options from o; the caller frees them.
func (o *SessionOptions) build() (*C.tern_session_options, error) {
	var opts *C.tern_session_options
	var cerr *C.tern_error
	if err := takeError(C.tern_session_options_new(&opts, &cerr), cerr); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	set := optionSetter{}

	for _, t := range []struct {
		kind C.uint32_t
		d    time.Duration
		name string
	}{
		{C.TERN_TIMEOUT_TOTAL, o.Timeout, "Timeout"},
		{C.TERN_TIMEOUT_CONNECT, o.ConnectTimeout, "ConnectTimeout"},
		{C.TERN_TIMEOUT_READ, o.ReadTimeout, "ReadTimeout"},
	} {
		if ms, ok := durationMS(t.d); ok {
			kind := t.kind
			set.call(t.name, func(e **C.tern_error) C.tern_code {
				return C.tern_session_options_set_timeout_ms(opts, kind, ms, e)
			})
		}
	}
	for _, k := range sortedKeys(o.Header) {
		for i, v := range o.Header[k] {
			name, value := cs.str(k), cs.str(v)
			first := i == 0
			set.call("Header", func(e **C.tern_error) C.tern_code {
				if first { // replaces tern's default of the name
					return C.tern_session_options_set_header(opts, name, value, e)
				}
				return C.tern_session_options_add_header(opts, name, value, e)
			})
		}
	}
	if o.UserAgent != "" {
		name, value := cs.str("user-agent"), cs.str(o.UserAgent)
		set.call("UserAgent", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_header(opts, name, value, e)
		})
	}
	if o.CAFile != "" {
		p := cs.str(o.CAFile)
		set.call("CAFile", func(e **C.tern_error) C.tern_code { return C.tern_session_options_add_ca_file(opts, p, e) })
	}
	if len(o.CAPEM) > 0 {
		pem := C.CBytes(o.CAPEM)
		set.call("CAPEM", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_add_ca_pem(opts, (*C.uint8_t)(pem), C.size_t(len(o.CAPEM)), e)
		})
		C.free(pem)
	}
	if o.CADir != "" {
		p := cs.str(o.CADir)
		set.call("CADir", func(e **C.tern_error) C.tern_code { return C.tern_session_options_add_ca_dir(opts, p, e) })
	}
	if o.NoSystemRoots {
		set.call("NoSystemRoots", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_system_roots(opts, 0, e) })
	}
	if o.ClientCertFile != "" || o.ClientKeyFile != "" {
		c, k := cs.str(o.ClientCertFile), cs.str(o.ClientKeyFile)
		set.call("ClientCertFile", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_client_cert_file(opts, c, k, e)
		})
	}
	if o.InsecureSkipVerify {
		set.call("InsecureSkipVerify", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_danger_accept_invalid_certs(opts, 1, e)
		})
	}
	if o.InsecureSkipHostnameVerify {
		set.call("InsecureSkipHostnameVerify", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_danger_accept_invalid_hostnames(opts, 1, e)
		})
	}
	if o.MinTLSVersion != TLSDefault || o.MaxTLSVersion != TLSDefault {
		set.call("TLS versions", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_tls_versions(opts, C.uint32_t(o.MinTLSVersion), C.uint32_t(o.MaxTLSVersion), e)
		})
	}
	if o.DisableSNI {
		set.call("DisableSNI", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_sni(opts, 0, e) })
	}
	if o.Proxy != "" {
		p := cs.str(o.Proxy)
		set.call("Proxy", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_proxy(opts, p, e) })
	}
	if o.ProxyUser != "" {
		u, pw := cs.str(o.ProxyUser), cs.str(o.ProxyPassword)
		set.call("ProxyUser", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_proxy_credentials(opts, u, pw, e)
		})
	}
	if o.NoProxy != "" {
		p := cs.str(o.NoProxy)
		set.call("NoProxy", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_no_proxy(opts, p, e) })
	}
	if o.ProxyFromEnvironment {
		set.call("ProxyFromEnvironment", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_trust_env(opts, 1, e) })
	}
	for _, k := range sortedKeys(o.ProxyConnectHeader) {
		for _, v := range o.ProxyConnectHeader[k] {
			name, value := cs.str(k), cs.str(v)
			set.call("ProxyConnectHeader", func(e **C.tern_error) C.tern_code {
				return C.tern_session_options_add_proxy_header(opts, name, value, e)
			})
		}
	}
	if o.HTTPVersion != HTTPAuto {
		set.call("HTTPVersion", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_http_version(opts, C.uint32_t(o.HTTPVersion), e)
		})
	}
	if o.DisableCompression {
		set.call("DisableCompression", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_decompress(opts, 0, e) })
	}
	if o.DisableRedirects || o.MaxRedirects != 0 {
		if o.MaxRedirects < 0 {
			set.err = &Error{Code: CodeInvalidArgument, Msg: "MaxRedirects: negative"}
		}
		max := 10
		if o.MaxRedirects > 0 {
			max = o.MaxRedirects
		}
		set.call("MaxRedirects", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_redirects(opts, boolU32(!o.DisableRedirects), C.uint32_t(max), e)
		})
	}
	if o.AllowHTTPSDowngrade {
		set.call("AllowHTTPSDowngrade", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_danger_allow_https_downgrade(opts, 1, e)
		})
	}
	if o.MaxBodySize > 0 {
		set.call("MaxBodySize", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_max_body_size(opts, C.uint64_t(o.MaxBodySize), e)
		})
	}
	if o.MaxResponseHeaderBytes > 0 {
		set.call("MaxResponseHeaderBytes", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_max_header_size(opts, C.uint32_t(o.MaxResponseHeaderBytes), e)
		})
	}
	if o.MaxConns != 0 || o.MaxConnsPerHost != 0 {
		if o.MaxConns < 0 || o.MaxConnsPerHost < 0 {
			set.err = &Error{Code: CodeInvalidArgument, Msg: "MaxConns: negative"}
		}
		set.call("MaxConns", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_connection_limits(opts, C.uint32_t(o.MaxConns), C.uint32_t(o.MaxConnsPerHost), e)
		})
	}
	if o.IdleConnTimeout != 0 || o.MaxIdleConnsPerHost != 0 || o.DisableKeepAlives {
		idle := C.uint64_t(30000)
		if ms, ok := durationMS(o.IdleConnTimeout); ok {
			idle = ms
		}
		perHost := C.uint32_t(32)
		if o.MaxIdleConnsPerHost > 0 {
			perHost = C.uint32_t(o.MaxIdleConnsPerHost)
		}
		if o.DisableKeepAlives {
			perHost = 0
		}
		set.call("IdleConnTimeout", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_pool(opts, idle, perHost, e)
		})
	}
	if len(o.Nameservers) > 0 {
		list := cs.str(strings.Join(o.Nameservers, ","))
		set.call("Nameservers", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_nameservers(opts, list, e) })
	}
	for _, r := range o.Resolve {
		p := cs.str(r)
		set.call("Resolve", func(e **C.tern_error) C.tern_code { return C.tern_session_options_add_resolve(opts, p, e) })
	}
	if o.IPFamily != IPAny {
		set.call("IPFamily", func(e **C.tern_error) C.tern_code {
			return C.tern_session_options_set_ip_family(opts, C.uint32_t(o.IPFamily), e)
		})
	}
	if ms, ok := durationMS(o.DNSCacheTTL); ok {
		set.call("DNSCacheTTL", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_dns_cache_ttl_ms(opts, ms, e) })
	}
	if o.CookieJar {
		set.call("CookieJar", func(e **C.tern_error) C.tern_code { return C.tern_session_options_set_cookie_jar(opts, 1, e) })
	}
	if o.StreamBufferSize < 0 {
		set.err = &Error{Code: CodeInvalidArgument, Msg: "StreamBufferSize: negative"}
	}
	// Callbacks run on runtime threads: the binding depends on it.
	set.call("delivery", func(e **C.tern_error) C.tern_code {
		return C.tern_session_options_set_delivery(opts, C.TERN_DELIVERY_RUNTIME_THREAD, e)
	})
	if set.err != nil {
		C.tern_session_options_free(opts)
		return nil, set.err
	}
	return opts, nil
}
