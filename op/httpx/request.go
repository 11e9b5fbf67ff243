package httpx

import (
	"context"
	"log/slog"
	"net/netip"
)

// Request is what the outer layer (Baseline) learns about a request: the
// id it gives it and the client address (ClientIP).
type Request struct {
	ID string
	IP netip.Addr
}

type requestKey struct{}

// WithRequest returns ctx carrying rq.
func WithRequest(ctx context.Context, rq *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, rq)
}

// RequestFrom returns the request ctx belongs to, or an empty one outside
// a request (the CLI, background work).
func RequestFrom(ctx context.Context) *Request {
	if rq, ok := ctx.Value(requestKey{}).(*Request); ok {
		return rq
	}
	return &Request{}
}

// IPString is the client address as the audit trail writes it ("" when
// unknown).
func (rq *Request) IPString() string {
	if !rq.IP.IsValid() {
		return ""
	}
	return rq.IP.String()
}

// LogHandler adds the request id and the client address of the request in
// ctx to every record logged with a context (slog's *Context methods), so
// that no warning inside a request loses them and no call site has to
// remember to add them (docs/THREAT-MODEL.md rule 13).
type LogHandler struct{ slog.Handler }

func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if rq, ok := ctx.Value(requestKey{}).(*Request); ok && rq.ID != "" {
		r.AddAttrs(slog.String("request_id", rq.ID))
		if rq.IP.IsValid() {
			r.AddAttrs(slog.String("ip", rq.IP.String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h LogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return LogHandler{h.Handler.WithAttrs(as)}
}

func (h LogHandler) WithGroup(name string) slog.Handler {
	return LogHandler{h.Handler.WithGroup(name)}
}
