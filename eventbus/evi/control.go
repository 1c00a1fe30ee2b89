package evi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sipasync/sipasync/admin"
)

// RegisterControl registers events.list and events.raise on r.
func (e *Events) RegisterControl(r *admin.RPC) error {
	if err := r.Register("events.list", "declared events and their transport subscribers", nil, e.rpcEventsList); err != nil {
		return err
	}
	return r.Register("events.raise", "raise a declared event with attributes (an object of name: value)", []string{"event", "attrs?"}, e.rpcEventsRaise)
}

func (e *Events) rpcEventsList(context.Context, json.RawMessage) (any, error) {
	subs := map[string][]string{}
	transports := []map[string]any{}
	for _, s := range e.Subscribers() {
		subs[s.Event] = append(subs[s.Event], s.Socket)
		transports = append(transports, map[string]any{"event": s.Event, "socket": s.Socket, "sent": s.Sent,
			"failed": s.Failed, "queued": s.Queue.Depth, "dropped": s.Queue.Dropped})
	}
	events := []map[string]any{}
	for _, name := range e.Declared() {
		socks := subs[name]
		if socks == nil {
			socks = []string{}
		}
		events = append(events, map[string]any{"event": name, "subscribed": e.Probe(name), "sockets": socks})
	}
	st := e.Stats()
	return map[string]any{"raised": st.Raised, "refused_too_large": st.TooLarge, "refused_unknown": st.Unknown,
		"refused_invalid": st.Invalid, "events": events, "transports": transports}, nil
}

func (e *Events) rpcEventsRaise(_ context.Context, p json.RawMessage) (any, error) {
	var in struct {
		Event string          `json:"event"`
		Attrs json.RawMessage `json:"attrs"`
	}
	if err := admin.DecodeParams(p, &in); err != nil {
		return nil, err
	}
	attrs, err := orderedAttrs(in.Attrs)
	if err != nil {
		return nil, err
	}
	if err := e.RaiseEvent(in.Event, attrs...); err != nil {
		if errors.Is(err, ErrUnknownEvent) {
			return nil, admin.InvalidParams("param \"event\": %v (see events.list)", err)
		}
		return nil, err
	}
	return map[string]any{"raised": in.Event, "attrs": len(attrs)}, nil
}

// orderedAttrs reads {"name": value, ...} keeping the order written.
func orderedAttrs(raw json.RawMessage) ([]Attr, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, admin.InvalidParams("param \"attrs\": want an object of name: value")
	}
	var out []Attr
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, admin.InvalidParams("param \"attrs\": %v", err)
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, admin.InvalidParams("param \"attrs\": %v", err)
		}
		k, _ := kt.(string)
		switch v := vt.(type) {
		case string:
			out = append(out, String(k, v))
		case json.Number:
			out = append(out, String(k, v.String()))
		case bool:
			out = append(out, String(k, fmt.Sprint(v)))
		default:
			return nil, admin.InvalidParams("param \"attrs\": %q must be a string, number or boolean", k)
		}
	}
	return out, nil
}
