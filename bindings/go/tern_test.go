package tern_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tern.dev/tern"
)

// The local servers of scripts/testenv.sh (source target/testenv/env.sh).
var (
	httpURL  = os.Getenv("TERN_TEST_HTTP")
	h2cURL   = os.Getenv("TERN_TEST_H2C")
	httpsURL = os.Getenv("TERN_TEST_HTTPS")
	caFile   = os.Getenv("TERN_TEST_CA")
	squidURL = os.Getenv("TERN_TEST_SQUID")
	sha1M    = os.Getenv("TERN_TEST_SHA256_1M")
	sha16M   = os.Getenv("TERN_TEST_SHA256_16M")
)

// rt is shared by every test, as a program would share one runtime.
var rt *tern.Runtime

func TestMain(m *testing.M) {
	for name, v := range map[string]string{
		"TERN_TEST_HTTP": httpURL, "TERN_TEST_H2C": h2cURL, "TERN_TEST_HTTPS": httpsURL,
		"TERN_TEST_CA": caFile, "TERN_TEST_SQUID": squidURL,
		"TERN_TEST_SHA256_1M": sha1M, "TERN_TEST_SHA256_16M": sha16M,
	} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run scripts/testenv.sh start and source target/testenv/env.sh (or use bindings/go/run.sh)\n", name)
			os.Exit(2)
		}
	}
	var err error
	rt, err = tern.NewRuntime(tern.RuntimeOptions{ThreadName: "tern-go-test"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewRuntime:", err)
		os.Exit(2)
	}
	code := m.Run()
	rt.Close()
	// Every handle handed to tern was released, exactly once, by the end.
	if n := tern.LiveHandles(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cgo handles still live after Runtime.Close\n", n)
		code = 1
	}
	if n, last := tern.CallbackFaults(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d callback faults, last: %s\n", n, last)
		code = 1
	}
	os.Exit(code)
}

func newSession(t testing.TB, opts tern.SessionOptions) *tern.Session {
	t.Helper()
	s, err := tern.NewSession(rt, opts)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func checkNoFaults(t testing.TB) {
	t.Helper()
	if n, last := tern.CallbackFaults(); n != 0 {
		t.Fatalf("%d callback faults, last: %s", n, last)
	}
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestVersion(t *testing.T) {
	if v := tern.Version(); v == "" || !strings.Contains(v, ".") {
		t.Fatalf("Version() = %q", v)
	}
	if got := tern.CodeTimeoutTotal.String(); got != "TIMEOUT_TOTAL" {
		t.Fatalf("CodeTimeoutTotal.String() = %q", got)
	}
	if got := tern.Code(12345).String(); got != "UNKNOWN" {
		t.Fatalf("Code(12345).String() = %q", got)
	}
}

func TestGetHTTP(t *testing.T) {
	s := newSession(t, tern.SessionOptions{})
	resp, err := s.Get(context.Background(), httpURL+"/hello")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Status != "200 OK" || string(resp.Body) != "Hello, world!" {
		t.Fatalf("got %q %q", resp.Status, resp.Body)
	}
	if resp.Proto != "HTTP/1.1" || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
		t.Fatalf("proto %q %d.%d", resp.Proto, resp.ProtoMajor, resp.ProtoMinor)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Fatalf("Content-Type %q, headers %v", ct, resp.Header)
	}
	if resp.EffectiveURL != httpURL+"/hello" || resp.RemoteAddr != "127.0.0.1:18080" || resp.ID == 0 {
		t.Fatalf("effective URL %q, remote %q, id %d", resp.EffectiveURL, resp.RemoteAddr, resp.ID)
	}
	if resp.Timing.Total <= 0 || resp.Timing.TTFB <= 0 {
		t.Fatalf("timing %+v", resp.Timing)
	}

	// An HTTP error status is a response, not an error.
	resp, err = s.Get(context.Background(), httpURL+"/status/404")
	if err != nil || resp.StatusCode != 404 || resp.Status != "404 Not Found" || string(resp.Body) != "status 404" {
		t.Fatalf("404: %v %+v", err, resp)
	}

	// Request headers and session headers.
	s2 := newSession(t, tern.SessionOptions{UserAgent: "tern-go-test/1", Header: http.Header{"X-Test": {"session"}}})
	req, err := tern.NewRequest("GET", httpURL+"/headers", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = s2.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(resp.Body), "user-agent=tern-go-test/1\n") || !strings.Contains(string(resp.Body), "x-test=session\n") {
		t.Fatalf("session headers not sent:\n%s", resp.Body)
	}
	req.Header.Set("X-Test", "request")
	resp, err = s2.Do(context.Background(), req)
	if err != nil || !strings.Contains(string(resp.Body), "x-test=request\n") {
		t.Fatalf("request header not sent: %v\n%s", err, resp.Body)
	}
}

func TestGetHTTPS(t *testing.T) {
	s := newSession(t, tern.SessionOptions{CAFile: caFile})
	resp, err := s.Get(context.Background(), httpsURL+"/bytes/1m")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Proto != "HTTP/2.0" || resp.ProtoMajor != 2 {
		t.Fatalf("https: proto %q, want HTTP/2.0 by ALPN", resp.Proto)
	}
	if len(resp.Body) != 1<<20 || sha(resp.Body) != sha1M {
		t.Fatalf("https /bytes/1m: %d bytes, sha %s", len(resp.Body), sha(resp.Body))
	}

	// HTTP/1.1 forced over the same server.
	s1 := newSession(t, tern.SessionOptions{CAFile: caFile, HTTPVersion: tern.HTTP1})
	resp, err = s1.Get(context.Background(), httpsURL+"/hello")
	if err != nil || resp.Proto != "HTTP/1.1" {
		t.Fatalf("HTTP1: %v %+v", err, resp)
	}

	// h2c by prior knowledge.
	s2 := newSession(t, tern.SessionOptions{HTTPVersion: tern.HTTP2PriorKnowledge})
	resp, err = s2.Get(context.Background(), h2cURL+"/hello")
	if err != nil || resp.Proto != "HTTP/2.0" || string(resp.Body) != "Hello, world!" {
		t.Fatalf("h2c: %v %+v", err, resp)
	}

	// Without the test CA the certificate does not verify.
	s3 := newSession(t, tern.SessionOptions{})
	_, err = s3.Get(context.Background(), httpsURL+"/hello")
	var te *tern.Error
	if !errors.Is(err, tern.ErrTLSVerify) || !errors.As(err, &te) || te.Code != tern.CodeTLSVerify || te.Msg == "" {
		t.Fatalf("no CA: got %v, want TLS_VERIFY", err)
	}
}

func TestProxyAndCookies(t *testing.T) {
	s := newSession(t, tern.SessionOptions{
		Proxy:         squidURL,
		ProxyUser:     os.Getenv("TERN_TEST_PROXY_USER"),
		ProxyPassword: os.Getenv("TERN_TEST_PROXY_PASS"),
		CookieJar:     true,
	})
	resp, err := s.Get(context.Background(), httpURL+"/cookies/set")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("through squid: %v %+v", err, resp)
	}
	if resp.RemoteAddr != strings.TrimPrefix(squidURL, "http://") {
		t.Fatalf("remote address %q is not the proxy's", resp.RemoteAddr)
	}
	cookies, err := s.Cookies(httpURL + "/cookies/echo")
	if err != nil || cookies != "b=2; a=1" {
		t.Fatalf("Cookies = %q, %v", cookies, err)
	}
	if err := s.AddCookie(httpURL+"/", "c=3; Path=/"); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Get(context.Background(), httpURL+"/cookies/echo")
	if err != nil || string(resp.Body) != "cookie=b=2; a=1; c=3\n" {
		t.Fatalf("cookie echo: %v %q", err, resp.Body)
	}
	if err := s.ClearCookies(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Cookies(httpURL + "/"); c != "" {
		t.Fatalf("after ClearCookies: %q", c)
	}

	// Without credentials squid answers 407: PROXY_AUTH.
	bad := newSession(t, tern.SessionOptions{Proxy: squidURL})
	if _, err := bad.Get(context.Background(), httpURL+"/hello"); !errors.Is(err, tern.ErrProxyAuth) {
		t.Fatalf("no credentials: %v, want PROXY_AUTH", err)
	}
	// A session without a jar refuses cookie calls.
	if _, err := bad.Cookies(httpURL); !errors.Is(err, tern.ErrInvalidState) {
		t.Fatalf("Cookies without a jar: %v", err)
	}
}

// 200 goroutines × 50 requests through one session: every request completes once,
// with its own body.
func TestConcurrent(t *testing.T) {
	s := newSession(t, tern.SessionOptions{})
	const goroutines, perGoroutine = 200, 50
	settle(t)
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				var resp *tern.Response
				var err error
				want := ""
				if i%2 == 0 {
					body := fmt.Sprintf("goroutine %d request %d", g, i)
					want = "method=POST\n" + body
					resp, err = s.Post(context.Background(), httpURL+"/echo", "text/plain", strings.NewReader(body))
				} else {
					want = "Hello, world!"
					resp, err = s.Get(context.Background(), httpURL+"/hello")
				}
				switch {
				case err != nil:
					firstErr.CompareAndSwap(nil, err.Error())
					failed.Add(1)
				case resp.StatusCode != 200 || string(resp.Body) != want:
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d body %q, want %q", resp.StatusCode, resp.Body, want))
					failed.Add(1)
				default:
					ok.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	t.Logf("%d requests in %v", goroutines*perGoroutine, time.Since(start))
	if failed.Load() != 0 || ok.Load() != goroutines*perGoroutine {
		t.Fatalf("%d ok, %d failed; first: %v", ok.Load(), failed.Load(), firstErr.Load())
	}
	settle(t) // release runs just after on_complete: it may trail Do's return
	checkNoFaults(t)
}

// slowServer answers after delay (or when the client goes away); with streamed, it
// sends the head and a first chunk at once, then waits.
func slowServer(t *testing.T, delay time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall-body" {
			w.Header().Set("Content-Length", "1000000")
			w.Write(bytes.Repeat([]byte("x"), 1000))
			w.(http.Flusher).Flush()
		}
		select {
		case <-time.After(delay):
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestContextCancel(t *testing.T) {
	srv := slowServer(t, 10*time.Second)
	s := newSession(t, tern.SessionOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.Get(ctx, srv.URL+"/slow")
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("cancel took %v", elapsed)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, tern.ErrCanceled) {
		t.Fatalf("got %v, want context.Canceled and tern.ErrCanceled", err)
	}

	ctx, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	_, err = s.Get(ctx, srv.URL+"/slow")
	var te *tern.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tern.ErrTimeout) || !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("deadline: got %v", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline error is not a net.Error with Timeout(): %v", err)
	}

	// A context already done: nothing is sent.
	_, err = s.Get(ctx, srv.URL+"/slow")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("done context: %v", err)
	}
	checkNoFaults(t)
}

func TestTimeouts(t *testing.T) {
	srv := slowServer(t, 10*time.Second)

	s := newSession(t, tern.SessionOptions{})
	req, _ := tern.NewRequest("GET", srv.URL+"/slow", nil)
	req.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := s.Do(context.Background(), req)
	if !errors.Is(err, tern.ErrTimeoutTotal) || !errors.Is(err, tern.ErrTimeout) {
		t.Fatalf("per-request Timeout: %v, want TIMEOUT_TOTAL", err)
	}
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("time-out after %v", elapsed)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, tern.ErrCanceled) {
		t.Fatalf("a tern time-out matched a context error: %v", err)
	}

	st := newSession(t, tern.SessionOptions{Timeout: 200 * time.Millisecond})
	if _, err := st.Get(context.Background(), srv.URL+"/slow"); !errors.Is(err, tern.ErrTimeoutTotal) {
		t.Fatalf("session Timeout: %v", err)
	}
	sr := newSession(t, tern.SessionOptions{ReadTimeout: 200 * time.Millisecond})
	if _, err := sr.Get(context.Background(), srv.URL+"/slow"); !errors.Is(err, tern.ErrTimeoutRead) {
		t.Fatalf("session ReadTimeout: %v", err)
	}
	// NoTimeout on the request lifts the session's time-out; the context ends it.
	req.Timeout = tern.NoTimeout
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if _, err := st.Do(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NoTimeout: %v, want the context's deadline", err)
	}
}

// slowReader reads from r in small pieces with pauses, as a slow consumer.
type slowReader struct {
	r     io.Reader
	delay time.Duration
	n     int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > s.n {
		p = p[:s.n]
	}
	time.Sleep(s.delay)
	return s.r.Read(p)
}

func TestStream(t *testing.T) {
	s := newSession(t, tern.SessionOptions{})
	resp, err := s.Stream(context.Background(), &tern.Request{URL: httpURL + "/bytes/16m"})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != 16<<20 {
		t.Fatalf("io.Copy: %d bytes, %v", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha16M {
		t.Fatalf("sha256 %s, want %s", got, sha16M)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "16777216" {
		t.Fatalf("head %+v", resp.Head)
	}

	// Back-pressure: a slow reader and a 256 KiB buffer make tern pause, and the
	// buffer never grows much past its limit.
	const limit = 256 << 10
	sb := newSession(t, tern.SessionOptions{StreamBufferSize: limit, CAFile: caFile})
	for _, base := range []string{httpURL, httpsURL} {
		resp, err = sb.Stream(context.Background(), &tern.Request{URL: base + "/bytes/1m"})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let tern fill the buffer
		h.Reset()
		n, err = io.Copy(h, &slowReader{r: resp.Body, delay: time.Millisecond, n: 16 << 10})
		pauses, maxBuffered := tern.StreamStats(resp.Body)
		resp.Body.Close()
		if err != nil || n != 1<<20 || hex.EncodeToString(h.Sum(nil)) != sha1M {
			t.Fatalf("%s slow reader: %d bytes, %v", base, n, err)
		}
		t.Logf("%s (%s): %d pauses, at most %d bytes buffered", base, resp.Proto, pauses, maxBuffered)
		// At most the limit plus one chunk (hyper reads at most ~400 KiB at once).
		if pauses == 0 || maxBuffered > limit+512<<10 {
			t.Fatalf("%s: %d pauses, %d bytes buffered at most (limit %d)", base, pauses, maxBuffered, limit)
		}
	}

	// An error status streams its body too.
	resp, err = s.Stream(context.Background(), &tern.Request{URL: httpURL + "/status/503"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 503 || string(body) != "status 503" {
		t.Fatalf("503: %v %d %q", err, resp.StatusCode, body)
	}
	// A failure before the head comes back from Stream itself.
	if _, err := s.Stream(context.Background(), &tern.Request{URL: "http://127.0.0.1:1/"}); !errors.Is(err, tern.ErrConnectionRefused) {
		t.Fatalf("refused: %v", err)
	}
	checkNoFaults(t)
}

func TestStreamCancel(t *testing.T) {
	srv := slowServer(t, 10*time.Second)
	s := newSession(t, tern.SessionOptions{})

	// The context ends while the body is being read.
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := s.Stream(ctx, &tern.Request{URL: srv.URL + "/stall-body"})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	n, err := io.Copy(io.Discard, resp.Body)
	if n != 1000 || !errors.Is(err, context.Canceled) || !errors.Is(err, tern.ErrCanceled) {
		t.Fatalf("read %d bytes, %v; want 1000 and context.Canceled", n, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	resp.Body.Close()

	// Closing the body early cancels the request; the handle is released.
	settle(t)
	resp, err = s.Stream(context.Background(), &tern.Request{URL: httpURL + "/bytes/16m"})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if tern.LiveHandles() != 1 {
		t.Fatalf("%d live handles while a stream is open, want 1", tern.LiveHandles())
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(buf); !errors.Is(err, tern.ErrBodyClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	settle(t) // released after Body.Close

	// A truncated body: the server promises more than it sends.
	trunc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer trunc.Close()
	resp, err = s.Stream(context.Background(), &tern.Request{URL: trunc.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, tern.ErrIncompleteBody) {
		t.Fatalf("truncated body: %v, want INCOMPLETE_BODY", err)
	}
	checkNoFaults(t)
}

// settle waits until every handle is released: tests run one at a time, and a
// release runs just after its on_complete, so it may trail the Do that returned.
func settle(t testing.TB) {
	t.Helper()
	waitFor(t, "every cgo handle to be released", func() bool { return tern.LiveHandles() == 0 })
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// onlyReader hides a reader's type, so the binding streams it.
type onlyReader struct{ io.Reader }

// errReader fails after some bytes.
type errReader struct{ n int }

var errBroken = errors.New("broken reader")

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errBroken
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	e.n -= len(p)
	return len(p), nil
}

// closeTracker records that the binding closed the request body.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestUpload(t *testing.T) {
	s := newSession(t, tern.SessionOptions{})
	ctx := context.Background()

	// An in-memory reader (copied, with Content-Length).
	resp, err := s.Post(ctx, httpURL+"/echo", "text/plain", strings.NewReader("hello from Go"))
	if err != nil || string(resp.Body) != "method=POST\nhello from Go" {
		t.Fatalf("strings.Reader: %v %q", err, resp.Body)
	}

	data := make([]byte, 3<<20+17)
	rand.New(rand.NewSource(1)).Read(data)
	want := "method=PUT\n" + string(data)

	// A reader of known length, streamed through tern's body reader.
	req := &tern.Request{Method: "PUT", URL: httpURL + "/echo", Body: onlyReader{bytes.NewReader(data)}, ContentLength: int64(len(data))}
	resp, err = s.Do(ctx, req)
	if err != nil || string(resp.Body) != want {
		t.Fatalf("known length: %v, %d bytes back", err, len(resp.Body))
	}

	// A pipe: unknown length (chunked), a writer that blocks and trickles; the
	// binding closes the pipe's reader when done.
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(data); off += 100000 {
			end := off + 100000
			if end > len(data) {
				end = len(data)
			}
			if _, err := pw.Write(data[off:end]); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		pw.Close()
	}()
	resp, err = s.Do(ctx, &tern.Request{Method: "PUT", URL: httpURL + "/echo", Body: pr})
	if err != nil || string(resp.Body) != want {
		t.Fatalf("pipe: %v, %d bytes back", err, len(resp.Body))
	}
	if _, err := pw.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("the request body was not closed: write gives %v", err)
	}

	// Over HTTP/2 too.
	s2 := newSession(t, tern.SessionOptions{CAFile: caFile})
	resp, err = s2.Do(ctx, &tern.Request{Method: "PUT", URL: httpsURL + "/echo", Body: onlyReader{bytes.NewReader(data)}})
	if err != nil || resp.Proto != "HTTP/2.0" || string(resp.Body) != want {
		t.Fatalf("h2 upload: %v, %d bytes back", err, len(resp.Body))
	}

	// A failing reader ends the request with an error wrapping the reader's.
	ct := &closeTracker{Reader: &errReader{n: 100000}}
	_, err = s.Do(ctx, &tern.Request{Method: "POST", URL: httpURL + "/echo", Body: ct})
	if !errors.Is(err, errBroken) || !errors.Is(err, tern.ErrCanceled) {
		t.Fatalf("failing reader: %v, want it wrapped", err)
	}
	if !ct.closed.Load() {
		t.Fatal("the failing body was not closed")
	}

	// A reader that blocks forever: the context still ends the request, and closing
	// the body (a pipe) lets tern's reader thread go.
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Do(cctx, &tern.Request{Method: "POST", URL: httpURL + "/echo", Body: pr2})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked reader: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("blocked reader: cancel took %v", time.Since(start))
	}

	// A panicking reader does not crash the process.
	_, err = s.Do(ctx, &tern.Request{Method: "POST", URL: httpURL + "/echo", Body: onlyReader{panicReader{}}})
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("panicking reader: %v", err)
	}
	checkNoFaults(t)
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader bug") }

func TestErrors(t *testing.T) {
	s := newSession(t, tern.SessionOptions{})
	ctx := context.Background()
	for _, c := range []struct {
		method, url string
		want        error
	}{
		{"GET", "not a url", tern.ErrInvalidURL},
		{"GET", "http://", tern.ErrInvalidURL},
		{"GET", "ftp://example.org/", tern.ErrUnsupportedScheme},
		{"GE T", httpURL, tern.ErrInvalidMethod},
	} {
		if _, err := tern.NewRequest(c.method, c.url, nil); !errors.Is(err, c.want) {
			t.Errorf("NewRequest(%q, %q): %v, want %v", c.method, c.url, err, c.want)
		}
		if _, err := s.Do(ctx, &tern.Request{Method: c.method, URL: c.url}); !errors.Is(err, c.want) {
			t.Errorf("Do(%q, %q): %v, want %v", c.method, c.url, err, c.want)
		}
	}
	_, err := s.Do(ctx, &tern.Request{URL: httpURL, Header: http.Header{"X-Bad": {"a\r\nb"}}})
	if !errors.Is(err, tern.ErrInvalidHeader) {
		t.Errorf("CRLF in a header: %v", err)
	}
	_, err = s.Get(ctx, "http://127.0.0.1:1/")
	var te *tern.Error
	if !errors.Is(err, tern.ErrConnectionRefused) || !errors.As(err, &te) || !strings.HasPrefix(te.Error(), "tern: CONNECTION_REFUSED: ") {
		t.Errorf("refused: %v", err)
	}
	if errors.Is(err, tern.ErrTimeout) || errors.Is(err, tern.ErrConnect) {
		t.Errorf("refused matched another sentinel: %v", err)
	}
	_, err = s.Get(ctx, "http://user:secret@127.0.0.1:1/")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("user info in a message: %v", err)
	}
	if _, err := tern.NewSession(rt, tern.SessionOptions{CAFile: "/nonexistent.pem"}); !errors.Is(err, tern.ErrInvalidFile) {
		t.Errorf("bad CA file: %v", err)
	}
	if _, err := tern.NewSession(rt, tern.SessionOptions{Proxy: "ftp://x"}); !errors.Is(err, tern.ErrUnsupportedScheme) {
		t.Errorf("bad proxy: %v", err)
	}
	redirect := newSession(t, tern.SessionOptions{MaxRedirects: 3})
	if _, err := redirect.Get(ctx, httpURL+"/redirect/5"); !errors.Is(err, tern.ErrTooManyRedirects) {
		t.Errorf("redirects: %v", err)
	}
	resp, err := redirect.Get(ctx, httpURL+"/redirect/2")
	if err != nil || resp.Redirects != 2 || string(resp.Body) != "Hello, world!" {
		t.Errorf("2 redirects: %v %+v", err, resp)
	}
	limited := newSession(t, tern.SessionOptions{MaxBodySize: 1000})
	if _, err := limited.Get(ctx, httpURL+"/bytes/1m"); !errors.Is(err, tern.ErrBodyTooLarge) {
		t.Errorf("MaxBodySize: %v", err)
	}
}

func TestClose(t *testing.T) {
	srv := slowServer(t, 10*time.Second)
	s, err := tern.NewSession(rt, tern.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	settle(t)
	// Close aborts requests in flight and waits for their release.
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := s.Get(context.Background(), srv.URL+"/slow")
			errs <- err
		}()
	}
	waitFor(t, "3 requests in flight", func() bool { return tern.LiveHandles() == 3 })
	s.Close()
	if n := tern.LiveHandles(); n != 0 {
		t.Fatalf("%d live handles after Close, want 0", n)
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; !errors.Is(err, tern.ErrShutdown) {
			t.Fatalf("in flight at Close: %v, want SHUTDOWN", err)
		}
	}
	if _, err := s.Get(context.Background(), httpURL+"/hello"); !errors.Is(err, tern.ErrShutdown) {
		t.Fatalf("after Close: %v", err)
	}
	s.Close() // again: nothing

	// Close does not wait for a paused stream nobody reads: it aborts it.
	sp, err := tern.NewSession(rt, tern.SessionOptions{StreamBufferSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sp.Stream(context.Background(), &tern.Request{URL: httpURL + "/bytes/16m"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to pause", func() bool { p, _ := tern.StreamStats(resp.Body); return p > 0 })
	sp.Close()
	if _, err := io.Copy(io.Discard, resp.Body); !errors.Is(err, tern.ErrShutdown) {
		t.Fatalf("paused stream at Close: %v, want SHUTDOWN", err)
	}
	resp.Body.Close()

	// Shutdown lets a request in flight finish.
	fast := slowServer(t, 300*time.Millisecond)
	s2, err := tern.NewSession(rt, tern.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := s2.Get(context.Background(), fast.URL+"/slow")
		if err == nil && string(resp.Body) != "late" {
			err = fmt.Errorf("body %q", resp.Body)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("request during Shutdown: %v", err)
	}

	// A runtime's Close closes its sessions.
	rt2, err := tern.NewRuntime(tern.RuntimeOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := tern.NewSession(rt2, tern.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Get(context.Background(), httpURL+"/hello"); err != nil {
		t.Fatal(err)
	}
	rt2.Close()
	if _, err := s3.Get(context.Background(), httpURL+"/hello"); !errors.Is(err, tern.ErrShutdown) {
		t.Fatalf("after Runtime.Close: %v", err)
	}
	if _, err := tern.NewSession(rt2, tern.SessionOptions{}); !errors.Is(err, tern.ErrShutdown) {
		t.Fatalf("NewSession after Runtime.Close: %v", err)
	}
	checkNoFaults(t)
}

// A streamed body nobody reads holds no tern thread: with one worker thread, other
// requests (also on the same HTTP/2 connection) still complete.
func TestStreamDoesNotBlock(t *testing.T) {
	rt1, err := tern.NewRuntime(tern.RuntimeOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt1.Close()
	for _, base := range []string{httpURL, httpsURL} {
		s, err := tern.NewSession(rt1, tern.SessionOptions{CAFile: caFile, StreamBufferSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Stream(context.Background(), &tern.Request{URL: base + "/bytes/16m"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the stream to pause", func() bool { p, _ := tern.StreamStats(resp.Body); return p > 0 })
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if r, err := s.Get(ctx, base+"/hello"); err != nil || string(r.Body) != "Hello, world!" {
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%s: %d requests failed while a stream was paused", base, failed.Load())
		}
		// The paused stream still reads to its end.
		h := sha256.New()
		if n, err := io.Copy(h, resp.Body); err != nil || n != 16<<20 || hex.EncodeToString(h.Sum(nil)) != sha16M {
			t.Fatalf("%s: paused stream: %d bytes, %v", base, n, err)
		}
		resp.Body.Close()
		s.Close()
	}
	checkNoFaults(t)
}

// HTTP/2: many goroutines multiplexed over one TLS connection.
func TestConcurrentHTTP2(t *testing.T) {
	s := newSession(t, tern.SessionOptions{CAFile: caFile})
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				body := fmt.Sprintf("h2 %d %d", g, i)
				resp, err := s.Post(context.Background(), httpsURL+"/echo", "", strings.NewReader(body))
				if err != nil || resp.Proto != "HTTP/2.0" || string(resp.Body) != "method=POST\n"+body {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
				}
			}
		}(g)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 1000 failed; first: %v", failed.Load(), firstErr.Load())
	}
	checkNoFaults(t)
}

// Contexts that end at random moments, racing every stage of the requests: each
// Do returns once, either the full body or a context error, and every handle is
// released.
func TestCancelStorm(t *testing.T) {
	s := newSession(t, tern.SessionOptions{CAFile: caFile})
	settle(t)
	var ok, canceled, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 25; i++ {
				base := httpURL
				if i%2 == 1 {
					base = httpsURL
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rnd.Intn(150000))*time.Microsecond)
				var err error
				if i%3 == 0 {
					var resp *tern.StreamResponse
					resp, err = s.Stream(ctx, &tern.Request{URL: base + "/bytes/1m"})
					if err == nil {
						var n int64
						n, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && n != 1<<20 {
							err = fmt.Errorf("stream: %d bytes", n)
						}
					}
				} else {
					var resp *tern.Response
					resp, err = s.Get(ctx, base+"/bytes/1m")
					if err == nil && len(resp.Body) != 1<<20 {
						err = fmt.Errorf("%d bytes", len(resp.Body))
					}
				}
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded) && errors.Is(err, tern.ErrCanceled):
					canceled.Add(1)
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}(g)
	}
	wg.Wait()
	t.Logf("%d complete, %d canceled", ok.Load(), canceled.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d failed otherwise; first: %v", failed.Load(), firstErr.Load())
	}
	settle(t)
	// The session still works.
	if resp, err := s.Get(context.Background(), httpsURL+"/hello"); err != nil || string(resp.Body) != "Hello, world!" {
		t.Fatalf("after the storm: %v", err)
	}
	checkNoFaults(t)
}
