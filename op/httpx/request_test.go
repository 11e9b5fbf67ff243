package httpx

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// TestLogHandler: a record logged with a request's context carries its
// id and address, one without a request carries neither, and attributes
// added with With survive the wrapping.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler{slog.NewTextHandler(&buf, nil)}).With("component", "test")
	ctx := WithRequest(context.Background(), &Request{ID: "req-123", IP: netip.MustParseAddr("127.0.0.9")})
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
