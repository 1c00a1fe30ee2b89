package routes

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		assert.Equal(t, want, k.String())
	}
}

func TestTableDuplicateRoute(t *testing.T) {
	for _, k := range namedKinds {
		t.Run(k.String(), func(t *testing.T) {
			tb := NewTable()
			require.NoError(t, register(tb, k, "A", nop))
			err := register(tb, k, "A", nop)
			require.ErrorIs(t, err, ErrDuplicateRoute)
			assert.Contains(t, err.Error(), k.String()+"[A]", "the error names the route")
			// The first registration is kept.
			assert.True(t, tb.Has(k, "A"))
			assert.Equal(t, []string{"A"}, tb.Names(k))
		})
	}
}

func TestTableDuplicateRequestRoute(t *testing.T) {
	tb := NewTable()
	var log []string
	require.NoError(t, tb.Request(named("first", &log)))
	err := tb.Request(named("second", &log))
	require.ErrorIs(t, err, ErrDuplicateRoute)

	h, err := tb.Lookup(KindRequest, "")
	require.NoError(t, err)
	require.NoError(t, h.ServeSIP(NewContext(ContextOptions{})))
	assert.Equal(t, []string{"first"}, log, "the first request route is kept")
}

func TestTableSameNameInDifferentKinds(t *testing.T) {
	tb := NewTable()
	var log []string
	for _, k := range namedKinds {
		require.NoError(t, register(tb, k, "SAME", named(k.String(), &log)), "kind %s", k)
	}
	for _, k := range namedKinds {
		h, err := tb.Lookup(k, "SAME")
		require.NoError(t, err)
		require.NoError(t, h.ServeSIP(NewContext(ContextOptions{})))
	}
	assert.Equal(t, []string{"route", "failure_route", "onreply_route", "event_route"}, log,
		"each kind keeps its own handler")
}

func TestTableEmptyNameAndNilHandler(t *testing.T) {
	for _, k := range namedKinds {
		tb := NewTable()
		assert.ErrorIs(t, register(tb, k, "", nop), ErrEmptyName, "kind %s", k)
		assert.ErrorIs(t, register(tb, k, "X", nil), ErrNilHandler, "kind %s", k)
		assert.Equal(t, 0, len(tb.Names(k)), "a refused registration leaves nothing behind")
	}
	tb := NewTable()
	assert.ErrorIs(t, tb.Request(nil), ErrNilHandler)
	_, err := tb.Lookup(KindRequest, "")
	assert.ErrorIs(t, err, ErrUnknownRoute, "a nil request route is not registered")
}

func TestTableLookup(t *testing.T) {
	tb := NewTable()
	var log []string
	require.NoError(t, tb.Route("KNOWN", named("known", &log)))

	h, err := tb.Lookup(KindNamed, "KNOWN")
	require.NoError(t, err)
	require.NoError(t, h.ServeSIP(NewContext(ContextOptions{})))
	assert.Equal(t, []string{"known"}, log)

	_, err = tb.Lookup(KindNamed, "UNKNOWN")
	require.ErrorIs(t, err, ErrUnknownRoute)
	assert.Contains(t, err.Error(), "route[UNKNOWN]")

	_, err = tb.Lookup(KindFailure, "KNOWN")
	assert.ErrorIs(t, err, ErrUnknownRoute, "a name is looked up in its own kind only")

	_, err = tb.Lookup(KindRequest, "")
	assert.ErrorIs(t, err, ErrUnknownRoute, "no request route yet")

	_, err = tb.Lookup(Kind(200), "KNOWN")
	assert.ErrorIs(t, err, ErrUnknownRoute, "an out-of-range kind is unknown, not a panic")

	assert.True(t, tb.Has(KindNamed, "KNOWN"))
	assert.True(t, !tb.Has(KindNamed, "UNKNOWN"))
	assert.True(t, !tb.Has(KindRequest, ""))
	require.NoError(t, tb.Request(nop))
	assert.True(t, tb.Has(KindRequest, "ignored"), "the name is ignored for the request route")
}

func TestTableValidate(t *testing.T) {
	t.Run("missing request route", func(t *testing.T) {
		tb := NewTable()
		err := tb.Validate()
		require.ErrorIs(t, err, ErrUnknownRoute)
		assert.Contains(t, err.Error(), "request_route")
	})
	t.Run("empty table with request route", func(t *testing.T) {
		tb := NewTable()
		require.NoError(t, tb.Request(nop))
		assert.NoError(t, tb.Validate())
	})
	t.Run("expected target missing", func(t *testing.T) {
		tb := NewTable()
		require.NoError(t, tb.Request(nop))
		require.NoError(t, tb.Route("RESUME", nop))
		tb.Expect(KindNamed, "RESUME", "request_route")
		tb.Expect(KindNamed, "RESUEM", "async.Route in auth.go")
		tb.Expect(KindFailure, "MISSED", "relay")
		err := tb.Validate()
		require.ErrorIs(t, err, ErrUnknownRoute)
		msg := err.Error()
		assert.Contains(t, msg, "route[RESUEM]")
		assert.Contains(t, msg, "async.Route in auth.go", "the error says who named the target")
		assert.Contains(t, msg, "failure_route[MISSED]", "all problems are reported")
		assert.NotContains(t, msg, "route[RESUME]", "a present target is not reported")
	})
	t.Run("expected target of another kind", func(t *testing.T) {
		tb := NewTable()
		require.NoError(t, tb.Request(nop))
		require.NoError(t, tb.Route("MISSED", nop))
		tb.Expect(KindFailure, "MISSED", "relay")
		assert.ErrorIs(t, tb.Validate(), ErrUnknownRoute, "route[MISSED] does not satisfy failure_route[MISSED]")
	})
	t.Run("all present", func(t *testing.T) {
		tb := NewTable()
		require.NoError(t, tb.Request(nop))
		require.NoError(t, tb.Route("RESUME", nop))
		require.NoError(t, tb.Event("core:tkv", nop))
		tb.Expect(KindNamed, "RESUME", "x")
		tb.Expect(KindEvent, "core:tkv", "y")
		assert.NoError(t, tb.Validate())
	})
	t.Run("missing request route and target", func(t *testing.T) {
		tb := NewTable()
		tb.Expect(KindNamed, "GONE", "z")
		err := tb.Validate()
		assert.True(t, err != nil, "Validate fails")
		assert.Contains(t, err.Error(), "request_route")
		assert.Contains(t, err.Error(), "route[GONE]")
	})
}

func TestTableNamesSorted(t *testing.T) {
	tb := NewTable()
	for _, n := range []string{"delta", "alpha", "Charlie", "bravo", "alpha2"} {
		require.NoError(t, tb.Route(n, nop))
	}
	require.NoError(t, tb.Event("core:tkv", nop))
	assert.Equal(t, []string{"Charlie", "alpha", "alpha2", "bravo", "delta"}, tb.Names(KindNamed))
	assert.Equal(t, []string{"core:tkv"}, tb.Names(KindEvent))
	assert.Equal(t, 0, len(tb.Names(KindFailure)))
	assert.True(t, tb.Names(Kind(200)) == nil, "no names for an unknown kind")

	names := tb.Names(KindNamed)
	names[0] = "mutated"
	assert.Equal(t, "Charlie", tb.Names(KindNamed)[0], "Names returns a copy")
}

func TestTableConcurrentLookups(t *testing.T) {
	tb := NewTable()
	require.NoError(t, tb.Request(nop))
	for i := range 50 {
		require.NoError(t, tb.Route(fmt.Sprintf("R%d", i), nop))
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
		require.NoError(t, tb.Event(fmt.Sprintf("E%d", i), nop))
	}
	wg.Wait()
	assert.Equal(t, 50, len(tb.Names(KindEvent)))
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
	require.NoError(t, h.ServeSIP(NewContext(ContextOptions{})))
	assert.Equal(t, []string{"a>", "b>", "c>", "h", "<c", "<b", "<a"}, log)

	log = nil
	require.NoError(t, Chain(named("bare", &log)).ServeSIP(NewContext(ContextOptions{})))
	assert.Equal(t, []string{"bare"}, log, "Chain without middleware is the handler")
}

func TestChainShortCircuit(t *testing.T) {
	deny := errors.New("denied")
	var log []string
	auth := func(Handler) Handler {
		return HandlerFunc(func(*Context) error { return deny })
	}
	err := Chain(named("h", &log), auth).ServeSIP(NewContext(ContextOptions{}))
	assert.ErrorIs(t, err, deny)
	assert.Equal(t, 0, len(log), "a middleware that does not call next stops the chain")
}

func TestStatusError(t *testing.T) {
	inner := errors.New("db down")

	err := Error(503, "Service Unavailable", inner)
	var se *StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 503, se.Code)
	assert.Equal(t, "Service Unavailable", se.Reason)
	assert.ErrorIs(t, err, inner, "Unwrap reaches the cause")
	assert.Equal(t, "sip 503 Service Unavailable: db down", err.Error())

	assert.Equal(t, "sip 404 Not Found", (&StatusError{Code: 404, Reason: "Not Found"}).Error())
	nilCause := Error(486, "Busy Here", nil)
	require.ErrorAs(t, nilCause, &se)
	assert.Equal(t, "sip 486 Busy Here", nilCause.Error())

	code, reason := StatusOf(err)
	assert.Equal(t, 503, code)
	assert.Equal(t, "Service Unavailable", reason)
}

func TestErrorKeepsInnerStatus(t *testing.T) {
	inner := Error(486, "Busy Here", errors.New("callee busy"))
	wrapped := fmt.Errorf("route[CALL]: %w", inner)
	outer := Error(500, "Server Internal Error", wrapped)

	code, reason := StatusOf(outer)
	assert.Equal(t, 486, code, "a status already carried is kept")
	assert.Equal(t, "Busy Here", reason)
	assert.True(t, wrapped == outer, "Error returns the error unchanged when it carries a status")
}

func TestStatusOfDefault(t *testing.T) {
	for _, err := range []error{errors.New("plain"), fmt.Errorf("wrapped: %w", errors.New("x")), nil} {
		code, reason := StatusOf(err)
		assert.Equal(t, 500, code)
		assert.True(t, strings.HasPrefix(reason, "Server Internal Error"), reason)
	}
	code, _ := StatusOf(fmt.Errorf("deep: %w", fmt.Errorf("deeper: %w", Error(403, "Forbidden", nil))))
	assert.Equal(t, 403, code, "StatusOf looks through wrapping")
}
