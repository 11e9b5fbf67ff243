package op

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
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
