package tern_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"tern.dev/tern"
)

func Example() {
	rt, err := tern.NewRuntime(tern.RuntimeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	s, err := tern.NewSession(rt, tern.SessionOptions{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.Get(ctx, "https://example.org/")
	switch {
	case errors.Is(err, tern.ErrTimeout):
		fmt.Println("too slow:", err)
	case err != nil:
		fmt.Println("failed:", err)
	default:
		fmt.Println(resp.Status, resp.Proto, len(resp.Body), "bytes")
	}
}

func ExampleSession_Stream() {
	rt, _ := tern.NewRuntime(tern.RuntimeOptions{})
	defer rt.Close()
	s, _ := tern.NewSession(rt, tern.SessionOptions{})
	defer s.Close()

	resp, err := s.Stream(context.Background(), &tern.Request{URL: "https://example.org/big.iso"})
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body) // tern pauses the download while h is busy
	fmt.Printf("%d bytes, sha256 %x, %v\n", n, h.Sum(nil), err)
}

func ExampleSession_Do_upload() {
	rt, _ := tern.NewRuntime(tern.RuntimeOptions{})
	defer rt.Close()
	s, _ := tern.NewSession(rt, tern.SessionOptions{})
	defer s.Close()

	// Any io.Reader: this one is streamed (chunked), read on tern's blocking pool.
	body := io.MultiReader(strings.NewReader("part 1, "), strings.NewReader("part 2"))
	resp, err := s.Do(context.Background(), &tern.Request{Method: "PUT", URL: "http://127.0.0.1:8080/upload", Body: body})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode)
}
