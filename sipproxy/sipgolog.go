package sipproxy

import (
	"context"
	"log/slog"
	"strings"
)

// sipgoLog is the log handler given to sipgo's transport and transaction
// layers: it takes the records that mean "a message was dropped" and
// passes the rest on.
type sipgoLog struct {
	inner slog.Handler
	g     *guard
}

func (g *guard) logger(inner slog.Handler) *slog.Logger {
	return slog.New(sipgoLog{inner: inner, g: g})
}

func (h sipgoLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h sipgoLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var data string
		var err error
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "data":
				data = a.Value.String()
			case "error":
				err, _ = a.Value.Any().(error)
			}
			return true
		})
		switch {
		case r.Message == "failed to parse":
			// Transport: the bytes were dropped (a stream is closed after).
			h.g.parseFailed(data, err)
			return nil
		case r.Message == "Failed to send stateless 400 for malformed request":
			// sipgo's own 400 to a request with no Via or CSeq could not
			// be sent; the record below counts the request.
			h.g.malformedDropped.Add(1)
			return nil
		case r.Message == "Server tx failed to handle request" && err != nil &&
			strings.Contains(err.Error(), "make key failed"):
			h.g.malformed.Add(1)
			h.g.warn("request without Via or CSeq refused", err.Error(), "")
			return nil
		}
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h sipgoLog) WithAttrs(as []slog.Attr) slog.Handler {
	return sipgoLog{inner: h.inner.WithAttrs(as), g: h.g}
}

func (h sipgoLog) WithGroup(name string) slog.Handler {
	return sipgoLog{inner: h.inner.WithGroup(name), g: h.g}
}
