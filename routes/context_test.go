package routes

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/transaction"
)

// recorder is a Proxy that records the actions asked of it.
type recorder struct {
	table   *Table
	replies []replyCall
	relays  []string
	err     error // returned by Reply and Relay when set
}

type replyCall struct {
	code   int
	reason string
	body   []byte
	hdrs   []sip.Header
}

func (r *recorder) Reply(_ *Context, code int, reason string, body []byte, hdrs ...sip.Header) error {
	if r.err != nil {
		return r.err
	}
	r.replies = append(r.replies, replyCall{code, reason, body, hdrs})
	return nil
}

func (r *recorder) Relay(_ *Context, dst string) error {
	if r.err != nil {
		return r.err
	}
	r.relays = append(r.relays, dst)
	return nil
}

func (r *recorder) Routes() *Table { return r.table }

var _ Proxy = (*recorder)(nil)

func newRequest() *sip.Request {
	return sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
}

// newTx enters a transaction (without a sipgo server transaction) in a fresh table.
func newTx(t *testing.T) (*transaction.Table, *transaction.Tx) {
	t.Helper()
	tt := transaction.New(transaction.Options{})
	tx, err := tt.Add(newRequest(), nil)
	require.NoError(t, err)
	return tt, tx
}

// newCtx returns a Context over a fresh transaction with a recorder engine.
func newCtx(t *testing.T) (*Context, *recorder, *transaction.Tx) {
	t.Helper()
	_, tx := newTx(t)
	rec := &recorder{table: NewTable()}
	return NewContext(ContextOptions{Proxy: rec, Tx: tx, Kind: KindRequest}), rec, tx
}

func TestNewContextDefaults(t *testing.T) {
	c := NewContext(ContextOptions{})
	assert.True(t, c.Context() != nil, "a nil context becomes Background")
	assert.True(t, c.Logger() != nil, "a nil logger becomes the default")
	assert.True(t, c.Tx() == nil, "no transaction")
	assert.True(t, c.Proxy() == nil, "no engine")
	assert.Equal(t, OutcomeNone, c.Outcome())

	_, tx := newTx(t)
	c = NewContext(ContextOptions{Tx: tx})
	assert.True(t, tx.Request() == c.Request(), "the request defaults to the transaction's")

	other := newRequest()
	c = NewContext(ContextOptions{Tx: tx, Request: other})
	assert.True(t, other == c.Request(), "an explicit request wins")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := sip.NewResponseFromRequest(other, 486, "Busy Here", nil)
	c = NewContext(ContextOptions{Ctx: ctx, Kind: KindFailure, Name: "MISSED", Response: res, Data: 42})
	assert.Equal(t, ctx, c.Context())
	assert.Equal(t, KindFailure, c.Kind())
	assert.Equal(t, "MISSED", c.RouteName())
	assert.True(t, res == c.Response(), "the response is kept")
	assert.Equal(t, 42, c.Data())
}

func TestContextAttrWithTransaction(t *testing.T) {
	_, tx := newTx(t)
	c := NewContext(ContextOptions{Tx: tx})

	_, ok := c.Attr("caller")
	assert.True(t, !ok)
	c.SetAttr("caller", "alice")
	c.SetAttr("n", 3)

	v, ok := c.Attr("caller")
	assert.True(t, ok)
	assert.Equal(t, "alice", v)
	assert.Equal(t, "alice", c.AttrString("caller"))
	assert.Equal(t, "", c.AttrString("n"), "a non-string attribute reads as empty")
	assert.Equal(t, "", c.AttrString("absent"))

	// The attribute lives on the transaction: a later run (a resumed route)
	// with a new Context sees it.
	v, ok = tx.Attr("caller")
	assert.True(t, ok)
	assert.Equal(t, "alice", v)
	later := NewContext(ContextOptions{Tx: tx, Kind: KindNamed, Name: "RESUME"})
	assert.Equal(t, "alice", later.AttrString("caller"))
	n, _ := later.Attr("n")
	assert.Equal(t, 3, n)
}

func TestContextAttrWithoutTransaction(t *testing.T) {
	c := NewContext(ContextOptions{Kind: KindEvent, Name: "core:tkv"})
	_, ok := c.Attr("k")
	assert.True(t, !ok, "reading before any write works on a nil map")
	c.SetAttr("k", "v")
	assert.Equal(t, "v", c.AttrString("k"))
	c.SetAttr("k", "w")
	assert.Equal(t, "w", c.AttrString("k"), "SetAttr overwrites")

	other := NewContext(ContextOptions{Kind: KindEvent, Name: "core:tkv"})
	_, ok = other.Attr("k")
	assert.True(t, !ok, "runs without a transaction do not share attributes")
}

func TestContextReply(t *testing.T) {
	c, rec, _ := newCtx(t)
	hdr := sip.NewHeader("X-Test", "1")
	require.NoError(t, c.Reply(404, "Not Found", hdr))
	require.Equal(t, 1, len(rec.replies))
	assert.Equal(t, 404, rec.replies[0].code)
	assert.Equal(t, "Not Found", rec.replies[0].reason)
	assert.True(t, rec.replies[0].body == nil, "no body")
	assert.Equal(t, []sip.Header{hdr}, rec.replies[0].hdrs)
	assert.Equal(t, OutcomeReplied, c.Outcome())

	c, rec, _ = newCtx(t)
	require.NoError(t, c.ReplyBody(200, "OK", []byte("v=0")))
	require.Equal(t, 1, len(rec.replies))
	assert.Equal(t, []byte("v=0"), rec.replies[0].body)
	assert.Equal(t, OutcomeReplied, c.Outcome())
}

func TestContextProvisionalReplyDoesNotEnd(t *testing.T) {
	c, rec, _ := newCtx(t)
	require.NoError(t, c.Reply(180, "Ringing"))
	require.Equal(t, 1, len(rec.replies))
	assert.Equal(t, 180, rec.replies[0].code)
	assert.Equal(t, OutcomeNone, c.Outcome(), "a provisional reply is not a final outcome")

	require.NoError(t, c.Reply(199, "Early Dialog Terminated"))
	assert.Equal(t, OutcomeNone, c.Outcome(), "199 is still provisional")

	require.NoError(t, c.Reply(200, "OK"))
	assert.Equal(t, OutcomeReplied, c.Outcome(), "200 is the first final code")
}

func TestContextReplyProxyError(t *testing.T) {
	c, rec, _ := newCtx(t)
	rec.err = errors.New("transport down")
	assert.ErrorIs(t, c.Reply(200, "OK"), rec.err)
	assert.Equal(t, OutcomeNone, c.Outcome(), "a failed reply sets no outcome")
	assert.ErrorIs(t, c.Relay(), rec.err)
	assert.Equal(t, OutcomeNone, c.Outcome(), "a failed relay sets no outcome")
}

func TestContextRelay(t *testing.T) {
	c, rec, _ := newCtx(t)
	require.NoError(t, c.Relay())
	assert.Equal(t, []string{""}, rec.relays, "no destination: the engine picks the next hop")
	assert.Equal(t, OutcomeRelayed, c.Outcome())

	c, rec, _ = newCtx(t)
	c.SetDestination("10.0.0.2:5070")
	assert.Equal(t, "10.0.0.2:5070", c.Destination())
	require.NoError(t, c.Relay())
	assert.Equal(t, []string{"10.0.0.2:5070"}, rec.relays, "Relay uses the destination set")

	c, rec, _ = newCtx(t)
	c.SetDestination("10.0.0.2:5070")
	require.NoError(t, c.RelayTo("tcp:10.0.0.3:5080"))
	assert.Equal(t, []string{"tcp:10.0.0.3:5080"}, rec.relays, "RelayTo overrides the destination")
	assert.Equal(t, OutcomeRelayed, c.Outcome())
}

func TestContextActionsWithoutProxyOrTransaction(t *testing.T) {
	_, tx := newTx(t)
	noProxy := NewContext(ContextOptions{Tx: tx})
	assert.ErrorIs(t, noProxy.Reply(200, "OK"), ErrNoProxy)
	assert.ErrorIs(t, noProxy.Relay(), ErrNoProxy)
	assert.ErrorIs(t, noProxy.RelayTo("10.0.0.1:5060"), ErrNoProxy)
	assert.ErrorIs(t, noProxy.Route("X"), ErrNoProxy)
	assert.Equal(t, OutcomeNone, noProxy.Outcome())

	rec := &recorder{table: NewTable()}
	noTx := NewContext(ContextOptions{Proxy: rec, Kind: KindEvent, Name: "core:tkv"})
	assert.ErrorIs(t, noTx.Reply(200, "OK"), ErrNoTransaction)
	assert.ErrorIs(t, noTx.ReplyBody(200, "OK", []byte("x")), ErrNoTransaction)
	assert.ErrorIs(t, noTx.Relay(), ErrNoTransaction)
	assert.Equal(t, 0, len(rec.replies), "the engine is not called without a transaction")
	assert.Equal(t, 0, len(rec.relays))
	assert.Equal(t, OutcomeNone, noTx.Outcome())
}

func TestContextDropAndPark(t *testing.T) {
	c, rec, _ := newCtx(t)
	c.Drop()
	assert.Equal(t, OutcomeDropped, c.Outcome())
	assert.Equal(t, 0, len(rec.replies), "Drop sends nothing")

	c, _, _ = newCtx(t)
	c.MarkParked()
	assert.Equal(t, OutcomeParked, c.Outcome())
}

func TestContextArmedRoutes(t *testing.T) {
	c, _, _ := newCtx(t)
	assert.True(t, !c.RecordRouted())
	assert.Equal(t, "", c.FailureRoute())
	assert.Equal(t, "", c.ReplyRoute())
	c.RecordRoute()
	c.OnFailure("MISSED")
	c.OnReply("RPL")
	assert.True(t, c.RecordRouted())
	assert.Equal(t, "MISSED", c.FailureRoute())
	assert.Equal(t, "RPL", c.ReplyRoute())
}

func TestContextRoute(t *testing.T) {
	c, rec, _ := newCtx(t)
	var gotKind Kind
	var gotName string
	require.NoError(t, rec.table.Route("AUTH", HandlerFunc(func(c *Context) error {
		gotKind, gotName = c.Kind(), c.RouteName()
		c.SetAttr("authed", true)
		return c.Reply(403, "Forbidden")
	})))

	require.NoError(t, c.Route("AUTH"))
	assert.Equal(t, KindNamed, gotKind, "route[AUTH] runs as a named route")
	assert.Equal(t, "AUTH", gotName)
	assert.Equal(t, KindRequest, c.Kind(), "the caller's kind is restored")
	assert.Equal(t, "", c.RouteName(), "the caller's name is restored")
	assert.Equal(t, OutcomeReplied, c.Outcome(), "route[AUTH] ran with the caller's Context")
	v, _ := c.Attr("authed")
	assert.Equal(t, true, v)
	require.Equal(t, 1, len(rec.replies))
	assert.Equal(t, 403, rec.replies[0].code)
}

func TestContextRouteNestedAndError(t *testing.T) {
	c, rec, _ := newCtx(t)
	boom := errors.New("boom")
	var trail []string
	require.NoError(t, rec.table.Route("OUTER", HandlerFunc(func(c *Context) error {
		trail = append(trail, "outer:"+c.RouteName())
		if err := c.Route("INNER"); err != nil {
			trail = append(trail, "back:"+c.RouteName())
			return err
		}
		return nil
	})))
	require.NoError(t, rec.table.Route("INNER", HandlerFunc(func(c *Context) error {
		trail = append(trail, "inner:"+c.RouteName())
		return boom
	})))

	c = NewContext(ContextOptions{Proxy: rec, Tx: c.Tx(), Kind: KindFailure, Name: "MISSED"})
	err := c.Route("OUTER")
	assert.ErrorIs(t, err, boom, "the route's error is returned to the caller")
	assert.Equal(t, []string{"outer:OUTER", "inner:INNER", "back:OUTER"}, trail)
	assert.Equal(t, KindFailure, c.Kind(), "kind restored after an error")
	assert.Equal(t, "MISSED", c.RouteName(), "name restored after an error")
}

func TestContextRouteUnknown(t *testing.T) {
	c, rec, _ := newCtx(t)
	require.NoError(t, rec.table.Failure("ONLY_FAILURE", nop))
	assert.ErrorIs(t, c.Route("NOPE"), ErrUnknownRoute)
	assert.ErrorIs(t, c.Route("ONLY_FAILURE"), ErrUnknownRoute, "Route runs named routes only")
	assert.Equal(t, KindRequest, c.Kind())
	assert.Equal(t, OutcomeNone, c.Outcome())
}

func TestContextResumeReason(t *testing.T) {
	tt, tx := newTx(t)
	c := NewContext(ContextOptions{Tx: tx})
	assert.Equal(t, transaction.ReasonNone, c.ResumeReason(), "a first run is not a resume")
	assert.Equal(t, c.ResumeValue(), nil)

	tok, err := tt.Suspend(tx, transaction.Suspension{Route: "RESUME", Value: "from-suspend"})
	require.NoError(t, err)
	rtx, err := tt.Continue(tok, transaction.ReasonTimer, nil)
	require.NoError(t, err)
	c = NewContext(ContextOptions{Tx: rtx, Kind: KindNamed, Name: "RESUME"})
	assert.Equal(t, transaction.ReasonTimer, c.ResumeReason())
	assert.Equal(t, "from-suspend", c.ResumeValue(), "the suspension's value reaches the resumed route")

	tok, err = tt.Suspend(rtx, transaction.Suspension{Route: "RESUME", Value: "from-suspend"})
	require.NoError(t, err)
	rtx, err = tt.Continue(tok, transaction.ReasonExternal, 7)
	require.NoError(t, err)
	c = NewContext(ContextOptions{Tx: rtx, Kind: KindNamed, Name: "RESUME"})
	assert.Equal(t, transaction.ReasonExternal, c.ResumeReason())
	assert.Equal(t, 7, c.ResumeValue(), "a value given to Continue wins")

	noTx := NewContext(ContextOptions{Kind: KindEvent})
	assert.Equal(t, transaction.ReasonNone, noTx.ResumeReason())
	assert.Equal(t, noTx.ResumeValue(), nil)
}
