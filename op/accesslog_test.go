package op

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestAccessLogLine: the access log line of a request carries its request
// id and client address once each (httpx.Baseline logs it through httpx.LogHandler).
func TestAccessLogLine(t *testing.T) {
	var buf syncBuffer
	e := newTestEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	get(t, e.browser(), e.ts.URL+"/healthz")
	var line string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "msg=http") {
			line = l
		}
	}
	if strings.Count(line, "request_id=") != 1 || strings.Count(line, " ip=") != 1 || !strings.Contains(line, "path=/healthz") {
		t.Fatalf("access log line: %q", line)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
