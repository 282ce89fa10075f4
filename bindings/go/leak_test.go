package tern_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tern.dev/tern"
)

// workload runs n requests from 50 goroutines through s, mixing every path that
// takes a handle: buffered GETs, copied and streamed uploads (a second handle for
// the body reader), streamed responses read whole or closed early, and requests
// whose context is done before they are sent. It returns the first failure.
func workload(s *tern.Session, n int) error {
	const workers = 50
	var next atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) { firstErr.CompareAndSwap(nil, err) }
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				switch i % 20 {
				case 0, 1, 2, 3: // uploads, copied
					body := "request " + strconv.Itoa(i)
					resp, err := s.Post(ctx, httpURL+"/echo", "text/plain", strings.NewReader(body))
					if err != nil || string(resp.Body) != "method=POST\n"+body {
						fail(fmt.Errorf("echo %d: %v", i, err))
					}
				case 4: // upload through the body reader
					body := "streamed " + strconv.Itoa(i)
					resp, err := s.Do(ctx, &tern.Request{Method: "PUT", URL: httpURL + "/echo", Body: onlyReader{strings.NewReader(body)}})
					if err != nil || string(resp.Body) != "method=PUT\n"+body {
						fail(fmt.Errorf("reader upload %d: %v", i, err))
					}
				case 5: // streamed response, read whole
					resp, err := s.Stream(ctx, &tern.Request{URL: httpURL + "/hello"})
					if err != nil {
						fail(fmt.Errorf("stream %d: %v", i, err))
						continue
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || string(b) != "Hello, world!" {
						fail(fmt.Errorf("stream %d: %v %q", i, err, b))
					}
				case 6: // streamed response closed early (canceled), 1 in 200
					if i%200 != 6 {
						continue
					}
					resp, err := s.Stream(ctx, &tern.Request{URL: httpURL + "/bytes/1m"})
					if err != nil {
						fail(fmt.Errorf("stream 1m %d: %v", i, err))
						continue
					}
					io.ReadFull(resp.Body, make([]byte, 100))
					resp.Body.Close()
				case 7: // context done before send: no handle at all
					cctx, cancel := context.WithCancel(ctx)
					cancel()
					if _, err := s.Get(cctx, httpURL+"/hello"); !errors.Is(err, context.Canceled) {
						fail(fmt.Errorf("canceled %d: %v", i, err))
					}
				default:
					resp, err := s.Get(ctx, httpURL+"/hello")
					if err != nil || !bytes.Equal(resp.Body, []byte("Hello, world!")) {
						fail(fmt.Errorf("get %d: %v", i, err))
					}
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}

type usage struct {
	goroutines int
	heapInuse  uint64
	rss        int64 // bytes, Go and C heaps together
}

func measure() usage {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{goroutines: runtime.NumGoroutine(), heapInuse: m.HeapInuse, rss: rss()}
}

// rss reads the resident set size from /proc (0 when unavailable).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// After a warm-up, 10,000 more requests leave no handle behind and grow neither the
// goroutine count nor the heap.
func TestNoLeaks(t *testing.T) {
	s, err := tern.NewSession(rt, tern.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	settle(t)

	start := time.Now()
	if err := workload(s, 2000); err != nil {
		t.Fatal("warm-up: ", err)
	}
	settle(t)
	before := measure()

	const n = 10000
	mid := time.Now()
	if err := workload(s, n); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(mid)
	// Releases trail on_complete (and a stream's Close) by a moment.
	settle(t)
	after := measure()
	t.Logf("warm-up %v, %d requests in %v; goroutines %d -> %d, HeapInuse %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB",
		mid.Sub(start), n, elapsed, before.goroutines, after.goroutines,
		float64(before.heapInuse)/(1<<20), float64(after.heapInuse)/(1<<20),
		float64(before.rss)/(1<<20), float64(after.rss)/(1<<20))

	if after.goroutines > before.goroutines {
		t.Errorf("goroutines grew from %d to %d", before.goroutines, after.goroutines)
	}
	const slack = 4 << 20
	if after.heapInuse > before.heapInuse+before.heapInuse/4+slack {
		t.Errorf("HeapInuse grew from %d to %d bytes", before.heapInuse, after.heapInuse)
	}
	if before.rss > 0 && after.rss > before.rss+64<<20 {
		t.Errorf("RSS grew from %d to %d bytes", before.rss, after.rss)
	}

	s.Close()
	if n := tern.LiveHandles(); n != 0 {
		t.Fatalf("%d live handles after Session.Close", n)
	}
	checkNoFaults(t)
}
