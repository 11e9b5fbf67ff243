package op

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// TestRequestHandler: a record logged with a request's context carries its
// id and address, one without a request carries neither, and attributes
// added with With survive the wrapping.
func TestRequestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(requestHandler{slog.NewTextHandler(&buf, nil)}).With("component", "test")
	ctx := context.WithValue(context.Background(), reqInfoKey, &reqInfo{id: "req-123", ip: netip.MustParseAddr("127.0.0.9")})
	log.WarnContext(ctx, "inside a request")
	log.Warn("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %q", buf.String())
	}
	if !strings.Contains(lines[0], "request_id=req-123") || !strings.Contains(lines[0], "ip=127.0.0.9") || !strings.Contains(lines[0], "component=test") {
		t.Errorf("record inside a request: %s", lines[0])
	}
	if strings.Contains(lines[1], "request_id") || !strings.Contains(lines[1], "component=test") {
		t.Errorf("record outside a request: %s", lines[1])
	}
}

// TestAccessLogLine: the access log line of a request carries its request
// id and client address once each (outer logs it through requestHandler).
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
