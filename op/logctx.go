package op

import (
	"context"
	"log/slog"
)

// requestHandler adds the request id and the client address of the
// request in ctx to every record logged with a context (slog's *Context
// methods), so that no warning inside a request loses them and no call
// site has to remember to add them (docs/THREAT-MODEL.md rule 13).
type requestHandler struct{ slog.Handler }

func (h requestHandler) Handle(ctx context.Context, r slog.Record) error {
	if ri, ok := ctx.Value(reqInfoKey).(*reqInfo); ok && ri.id != "" {
		r.AddAttrs(slog.String("request_id", ri.id))
		if ri.ip.IsValid() {
			r.AddAttrs(slog.String("ip", ri.ip.String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestHandler{h.Handler.WithAttrs(as)}
}

func (h requestHandler) WithGroup(name string) slog.Handler {
	return requestHandler{h.Handler.WithGroup(name)}
}
