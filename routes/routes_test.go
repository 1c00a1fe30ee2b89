package routes

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// nop is a handler that does nothing.
var nop = HandlerFunc(func(*Context) error { return nil })

// named returns a handler that appends name to *log when it runs.
func named(name string, log *[]string) Handler {
	return HandlerFunc(func(*Context) error {
		*log = append(*log, name)
		return nil
	})
}

// register registers h as k[name] through the kind's own method.
func register(t *Table, k Kind, name string, h Handler) error {
	switch k {
	case KindNamed:
		return t.Route(name, h)
	case KindFailure:
		return t.Failure(name, h)
	case KindReply:
		return t.Reply(name, h)
	case KindEvent:
		return t.Event(name, h)
	}
	panic(fmt.Sprintf("register: kind %s has no name", k))
}

var namedKinds = []Kind{KindNamed, KindFailure, KindReply, KindEvent}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindRequest: "request_route",
		KindNamed:   "route",
		KindFailure: "failure_route",
		KindReply:   "onreply_route",
		KindEvent:   "event_route",
		Kind(42):    "kind(42)",
	} {
		eq(t, want, k.String())
	}
}

func TestTableDuplicateRoute(t *testing.T) {
	for _, k := range namedKinds {
		t.Run(k.String(), func(t *testing.T) {
			tb := NewTable()
			need(t, register(tb, k, "A", nop))
			err := register(tb, k, "A", nop)
			needIs(t, err, ErrDuplicateRoute)
			has(t, err.Error(), k.String()+"[A]", "the error names the route")
			// The first registration is kept.
			truth(t, tb.Has(k, "A"))
			eq(t, []string{"A"}, tb.Names(k))
		})
	}
}

func TestTableDuplicateRequestRoute(t *testing.T) {
	tb := NewTable()
	var log []string
	need(t, tb.Request(named("first", &log)))
	err := tb.Request(named("second", &log))
	needIs(t, err, ErrDuplicateRoute)

	h, err := tb.Lookup(KindRequest, "")
	need(t, err)
	need(t, h.ServeSIP(NewContext(ContextOptions{})))
	eq(t, []string{"first"}, log, "the first request route is kept")
}

func TestTableSameNameInDifferentKinds(t *testing.T) {
	tb := NewTable()
	var log []string
	for _, k := range namedKinds {
		need(t, register(tb, k, "SAME", named(k.String(), &log)), "kind %s", k)
	}
	for _, k := range namedKinds {
		h, err := tb.Lookup(k, "SAME")
		need(t, err)
		need(t, h.ServeSIP(NewContext(ContextOptions{})))
	}
	eq(t, []string{"route", "failure_route", "onreply_route", "event_route"}, log,
		"each kind keeps its own handler")
}

func TestTableEmptyNameAndNilHandler(t *testing.T) {
	for _, k := range namedKinds {
		tb := NewTable()
		errIs(t, register(tb, k, "", nop), ErrEmptyName, "kind %s", k)
		errIs(t, register(tb, k, "X", nil), ErrNilHandler, "kind %s", k)
		eq(t, 0, len(tb.Names(k)), "a refused registration leaves nothing behind")
	}
	tb := NewTable()
	errIs(t, tb.Request(nil), ErrNilHandler)
	_, err := tb.Lookup(KindRequest, "")
	errIs(t, err, ErrUnknownRoute, "a nil request route is not registered")
}

func TestTableLookup(t *testing.T) {
	tb := NewTable()
	var log []string
	need(t, tb.Route("KNOWN", named("known", &log)))

	h, err := tb.Lookup(KindNamed, "KNOWN")
	need(t, err)
	need(t, h.ServeSIP(NewContext(ContextOptions{})))
	eq(t, []string{"known"}, log)

	_, err = tb.Lookup(KindNamed, "UNKNOWN")
	needIs(t, err, ErrUnknownRoute)
	has(t, err.Error(), "route[UNKNOWN]")

	_, err = tb.Lookup(KindFailure, "KNOWN")
	errIs(t, err, ErrUnknownRoute, "a name is looked up in its own kind only")

	_, err = tb.Lookup(KindRequest, "")
	errIs(t, err, ErrUnknownRoute, "no request route yet")

	_, err = tb.Lookup(Kind(200), "KNOWN")
	errIs(t, err, ErrUnknownRoute, "an out-of-range kind is unknown, not a panic")

	truth(t, tb.Has(KindNamed, "KNOWN"))
	truth(t, !tb.Has(KindNamed, "UNKNOWN"))
	truth(t, !tb.Has(KindRequest, ""))
	need(t, tb.Request(nop))
	truth(t, tb.Has(KindRequest, "ignored"), "the name is ignored for the request route")
}

func TestTableValidate(t *testing.T) {
	t.Run("missing request route", func(t *testing.T) {
		tb := NewTable()
		err := tb.Validate()
		needIs(t, err, ErrUnknownRoute)
		has(t, err.Error(), "request_route")
	})
	t.Run("empty table with request route", func(t *testing.T) {
		tb := NewTable()
		need(t, tb.Request(nop))
		noErr(t, tb.Validate())
	})
	t.Run("expected target missing", func(t *testing.T) {
		tb := NewTable()
		need(t, tb.Request(nop))
		need(t, tb.Route("RESUME", nop))
		tb.Expect(KindNamed, "RESUME", "request_route")
		tb.Expect(KindNamed, "RESUEM", "async.Route in auth.go")
		tb.Expect(KindFailure, "MISSED", "relay")
		err := tb.Validate()
		needIs(t, err, ErrUnknownRoute)
		msg := err.Error()
		has(t, msg, "route[RESUEM]")
		has(t, msg, "async.Route in auth.go", "the error says who named the target")
		has(t, msg, "failure_route[MISSED]", "all problems are reported")
		hasNot(t, msg, "route[RESUME]", "a present target is not reported")
	})
	t.Run("expected target of another kind", func(t *testing.T) {
		tb := NewTable()
		need(t, tb.Request(nop))
		need(t, tb.Route("MISSED", nop))
		tb.Expect(KindFailure, "MISSED", "relay")
		errIs(t, tb.Validate(), ErrUnknownRoute, "route[MISSED] does not satisfy failure_route[MISSED]")
	})
	t.Run("all present", func(t *testing.T) {
		tb := NewTable()
		need(t, tb.Request(nop))
		need(t, tb.Route("RESUME", nop))
		need(t, tb.Event("core:tkv", nop))
		tb.Expect(KindNamed, "RESUME", "x")
		tb.Expect(KindEvent, "core:tkv", "y")
		noErr(t, tb.Validate())
	})
	t.Run("missing request route and target", func(t *testing.T) {
		tb := NewTable()
		tb.Expect(KindNamed, "GONE", "z")
		err := tb.Validate()
		truth(t, err != nil, "Validate fails")
		has(t, err.Error(), "request_route")
		has(t, err.Error(), "route[GONE]")
	})
}

func TestTableNamesSorted(t *testing.T) {
	tb := NewTable()
	for _, n := range []string{"delta", "alpha", "Charlie", "bravo", "alpha2"} {
		need(t, tb.Route(n, nop))
	}
	need(t, tb.Event("core:tkv", nop))
	eq(t, []string{"Charlie", "alpha", "alpha2", "bravo", "delta"}, tb.Names(KindNamed))
	eq(t, []string{"core:tkv"}, tb.Names(KindEvent))
	eq(t, 0, len(tb.Names(KindFailure)))
	truth(t, tb.Names(Kind(200)) == nil, "no names for an unknown kind")

	names := tb.Names(KindNamed)
	names[0] = "mutated"
	eq(t, "Charlie", tb.Names(KindNamed)[0], "Names returns a copy")
}

func TestTableConcurrentLookups(t *testing.T) {
	tb := NewTable()
	need(t, tb.Request(nop))
	for i := range 50 {
		need(t, tb.Route(fmt.Sprintf("R%d", i), nop))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("R%d", (i+g)%50)
				if _, err := tb.Lookup(KindNamed, name); err != nil {
					t.Error(err)
					return
				}
				_ = tb.Names(KindNamed)
			}
		})
	}
	// Registration of another kind while lookups run must be safe too.
	for i := range 50 {
		need(t, tb.Event(fmt.Sprintf("E%d", i), nop))
	}
	wg.Wait()
	eq(t, 50, len(tb.Names(KindEvent)))
}

func TestChainOrder(t *testing.T) {
	var log []string
	mw := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(c *Context) error {
				log = append(log, name+">")
				err := next.ServeSIP(c)
				log = append(log, "<"+name)
				return err
			})
		}
	}
	h := Chain(named("h", &log), mw("a"), mw("b"), mw("c"))
	need(t, h.ServeSIP(NewContext(ContextOptions{})))
	eq(t, []string{"a>", "b>", "c>", "h", "<c", "<b", "<a"}, log)

	log = nil
	need(t, Chain(named("bare", &log)).ServeSIP(NewContext(ContextOptions{})))
	eq(t, []string{"bare"}, log, "Chain without middleware is the handler")
}

func TestChainShortCircuit(t *testing.T) {
	deny := errors.New("denied")
	var log []string
	auth := func(Handler) Handler {
		return HandlerFunc(func(*Context) error { return deny })
	}
	err := Chain(named("h", &log), auth).ServeSIP(NewContext(ContextOptions{}))
	errIs(t, err, deny)
	eq(t, 0, len(log), "a middleware that does not call next stops the chain")
}

func TestStatusError(t *testing.T) {
	inner := errors.New("db down")

	err := Error(503, "Service Unavailable", inner)
	var se *StatusError
	needAs(t, err, &se)
	eq(t, 503, se.Code)
	eq(t, "Service Unavailable", se.Reason)
	errIs(t, err, inner, "Unwrap reaches the cause")
	eq(t, "sip 503 Service Unavailable: db down", err.Error())

	eq(t, "sip 404 Not Found", (&StatusError{Code: 404, Reason: "Not Found"}).Error())
	nilCause := Error(486, "Busy Here", nil)
	needAs(t, nilCause, &se)
	eq(t, "sip 486 Busy Here", nilCause.Error())

	code, reason := StatusOf(err)
	eq(t, 503, code)
	eq(t, "Service Unavailable", reason)
}

func TestErrorKeepsInnerStatus(t *testing.T) {
	inner := Error(486, "Busy Here", errors.New("callee busy"))
	wrapped := fmt.Errorf("route[CALL]: %w", inner)
	outer := Error(500, "Server Internal Error", wrapped)

	code, reason := StatusOf(outer)
	eq(t, 486, code, "a status already carried is kept")
	eq(t, "Busy Here", reason)
	truth(t, wrapped == outer, "Error returns the error unchanged when it carries a status")
}

func TestStatusOfDefault(t *testing.T) {
	for _, err := range []error{errors.New("plain"), fmt.Errorf("wrapped: %w", errors.New("x")), nil} {
		code, reason := StatusOf(err)
		eq(t, 500, code)
		truth(t, strings.HasPrefix(reason, "Server Internal Error"), reason)
	}
	code, _ := StatusOf(fmt.Errorf("deep: %w", fmt.Errorf("deeper: %w", Error(403, "Forbidden", nil))))
	eq(t, 403, code, "StatusOf looks through wrapping")
}
