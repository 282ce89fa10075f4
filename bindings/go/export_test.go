package tern

// Internals the external tests (package tern_test) check.

// LiveHandles is the number of cgo handles not yet deleted.
func LiveHandles() int64 { return liveHandles.Load() }

// CallbackFaults is the number of exactly-once violations or panics caught in
// callbacks, and the last one's description.
func CallbackFaults() (int64, string) {
	msg, _ := lastFault.Load().(string)
	return callbackFaults.Load(), msg
}

// StreamStats reports how often a streamed body paused tern, and the most bytes it
// held at once.
func StreamStats(body any) (pauses, maxBuffered int) {
	st := body.(*streamBody).c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pauses, st.maxBuffered
}
