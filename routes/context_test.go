package routes

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/sipasync/sipasync/transaction"
)

// recorder is an Engine that records the actions asked of it.
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

var _ Engine = (*recorder)(nil)

func newRequest() *sip.Request {
	return sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
}

// newTx enters a transaction (without a sipgo server transaction) in a fresh table.
func newTx(t *testing.T) (*transaction.Table, *transaction.Tx) {
	t.Helper()
	tt := transaction.New(transaction.Options{})
	tx, err := tt.Add(newRequest(), nil)
	need(t, err)
	return tt, tx
}

// newCtx returns a Context over a fresh transaction with a recorder engine.
func newCtx(t *testing.T) (*Context, *recorder, *transaction.Tx) {
	t.Helper()
	_, tx := newTx(t)
	rec := &recorder{table: NewTable()}
	return NewContext(ContextOptions{Engine: rec, Tx: tx, Kind: KindRequest}), rec, tx
}

func TestNewContextDefaults(t *testing.T) {
	c := NewContext(ContextOptions{})
	truth(t, c.Context() != nil, "a nil context becomes Background")
	truth(t, c.Logger() != nil, "a nil logger becomes the default")
	truth(t, c.Tx() == nil, "no transaction")
	truth(t, c.Engine() == nil, "no engine")
	eq(t, OutcomeNone, c.Outcome())

	_, tx := newTx(t)
	c = NewContext(ContextOptions{Tx: tx})
	truth(t, tx.Request() == c.Request(), "the request defaults to the transaction's")

	other := newRequest()
	c = NewContext(ContextOptions{Tx: tx, Request: other})
	truth(t, other == c.Request(), "an explicit request wins")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := sip.NewResponseFromRequest(other, 486, "Busy Here", nil)
	c = NewContext(ContextOptions{Ctx: ctx, Kind: KindFailure, Name: "MISSED", Response: res, Data: 42})
	eq(t, ctx, c.Context())
	eq(t, KindFailure, c.Kind())
	eq(t, "MISSED", c.RouteName())
	truth(t, res == c.Response(), "the response is kept")
	eq(t, 42, c.Data())
}

func TestContextAttrWithTransaction(t *testing.T) {
	_, tx := newTx(t)
	c := NewContext(ContextOptions{Tx: tx})

	_, ok := c.Attr("caller")
	truth(t, !ok)
	c.SetAttr("caller", "alice")
	c.SetAttr("n", 3)

	v, ok := c.Attr("caller")
	truth(t, ok)
	eq(t, "alice", v)
	eq(t, "alice", c.AttrString("caller"))
	eq(t, "", c.AttrString("n"), "a non-string attribute reads as empty")
	eq(t, "", c.AttrString("absent"))

	// The attribute lives on the transaction: a later run (a resumed route)
	// with a new Context sees it.
	v, ok = tx.Attr("caller")
	truth(t, ok)
	eq(t, "alice", v)
	later := NewContext(ContextOptions{Tx: tx, Kind: KindNamed, Name: "RESUME"})
	eq(t, "alice", later.AttrString("caller"))
	n, _ := later.Attr("n")
	eq(t, 3, n)
}

func TestContextAttrWithoutTransaction(t *testing.T) {
	c := NewContext(ContextOptions{Kind: KindEvent, Name: "core:tkv"})
	_, ok := c.Attr("k")
	truth(t, !ok, "reading before any write works on a nil map")
	c.SetAttr("k", "v")
	eq(t, "v", c.AttrString("k"))
	c.SetAttr("k", "w")
	eq(t, "w", c.AttrString("k"), "SetAttr overwrites")

	other := NewContext(ContextOptions{Kind: KindEvent, Name: "core:tkv"})
	_, ok = other.Attr("k")
	truth(t, !ok, "runs without a transaction do not share attributes")
}

func TestContextReply(t *testing.T) {
	c, rec, _ := newCtx(t)
	hdr := sip.NewHeader("X-Test", "1")
	need(t, c.Reply(404, "Not Found", hdr))
	needEq(t, 1, len(rec.replies))
	eq(t, 404, rec.replies[0].code)
	eq(t, "Not Found", rec.replies[0].reason)
	truth(t, rec.replies[0].body == nil, "no body")
	eq(t, []sip.Header{hdr}, rec.replies[0].hdrs)
	eq(t, OutcomeReplied, c.Outcome())

	c, rec, _ = newCtx(t)
	need(t, c.ReplyBody(200, "OK", []byte("v=0")))
	needEq(t, 1, len(rec.replies))
	eq(t, []byte("v=0"), rec.replies[0].body)
	eq(t, OutcomeReplied, c.Outcome())
}

func TestContextProvisionalReplyDoesNotEnd(t *testing.T) {
	c, rec, _ := newCtx(t)
	need(t, c.Reply(180, "Ringing"))
	needEq(t, 1, len(rec.replies))
	eq(t, 180, rec.replies[0].code)
	eq(t, OutcomeNone, c.Outcome(), "a provisional reply is not a final outcome")

	need(t, c.Reply(199, "Early Dialog Terminated"))
	eq(t, OutcomeNone, c.Outcome(), "199 is still provisional")

	need(t, c.Reply(200, "OK"))
	eq(t, OutcomeReplied, c.Outcome(), "200 is the first final code")
}

func TestContextReplyEngineError(t *testing.T) {
	c, rec, _ := newCtx(t)
	rec.err = errors.New("transport down")
	errIs(t, c.Reply(200, "OK"), rec.err)
	eq(t, OutcomeNone, c.Outcome(), "a failed reply sets no outcome")
	errIs(t, c.Relay(), rec.err)
	eq(t, OutcomeNone, c.Outcome(), "a failed relay sets no outcome")
}

func TestContextRelay(t *testing.T) {
	c, rec, _ := newCtx(t)
	need(t, c.Relay())
	eq(t, []string{""}, rec.relays, "no destination: the engine picks the next hop")
	eq(t, OutcomeRelayed, c.Outcome())

	c, rec, _ = newCtx(t)
	c.SetDestination("10.0.0.2:5070")
	eq(t, "10.0.0.2:5070", c.Destination())
	need(t, c.Relay())
	eq(t, []string{"10.0.0.2:5070"}, rec.relays, "Relay uses the destination set")

	c, rec, _ = newCtx(t)
	c.SetDestination("10.0.0.2:5070")
	need(t, c.RelayTo("tcp:10.0.0.3:5080"))
	eq(t, []string{"tcp:10.0.0.3:5080"}, rec.relays, "RelayTo overrides the destination")
	eq(t, OutcomeRelayed, c.Outcome())
}

func TestContextActionsWithoutEngineOrTransaction(t *testing.T) {
	_, tx := newTx(t)
	noEngine := NewContext(ContextOptions{Tx: tx})
	errIs(t, noEngine.Reply(200, "OK"), ErrNoEngine)
	errIs(t, noEngine.Relay(), ErrNoEngine)
	errIs(t, noEngine.RelayTo("10.0.0.1:5060"), ErrNoEngine)
	errIs(t, noEngine.Route("X"), ErrNoEngine)
	eq(t, OutcomeNone, noEngine.Outcome())

	rec := &recorder{table: NewTable()}
	noTx := NewContext(ContextOptions{Engine: rec, Kind: KindEvent, Name: "core:tkv"})
	errIs(t, noTx.Reply(200, "OK"), ErrNoTransaction)
	errIs(t, noTx.ReplyBody(200, "OK", []byte("x")), ErrNoTransaction)
	errIs(t, noTx.Relay(), ErrNoTransaction)
	eq(t, 0, len(rec.replies), "the engine is not called without a transaction")
	eq(t, 0, len(rec.relays))
	eq(t, OutcomeNone, noTx.Outcome())
}

func TestContextDropAndPark(t *testing.T) {
	c, rec, _ := newCtx(t)
	c.Drop()
	eq(t, OutcomeDropped, c.Outcome())
	eq(t, 0, len(rec.replies), "Drop sends nothing")

	c, _, _ = newCtx(t)
	c.MarkParked()
	eq(t, OutcomeParked, c.Outcome())
}

func TestContextArmedRoutes(t *testing.T) {
	c, _, _ := newCtx(t)
	truth(t, !c.RecordRouted())
	eq(t, "", c.FailureRoute())
	eq(t, "", c.ReplyRoute())
	c.RecordRoute()
	c.OnFailure("MISSED")
	c.OnReply("RPL")
	truth(t, c.RecordRouted())
	eq(t, "MISSED", c.FailureRoute())
	eq(t, "RPL", c.ReplyRoute())
}

func TestContextRoute(t *testing.T) {
	c, rec, _ := newCtx(t)
	var gotKind Kind
	var gotName string
	need(t, rec.table.Route("AUTH", HandlerFunc(func(c *Context) error {
		gotKind, gotName = c.Kind(), c.RouteName()
		c.SetAttr("authed", true)
		return c.Reply(403, "Forbidden")
	})))

	need(t, c.Route("AUTH"))
	eq(t, KindNamed, gotKind, "route[AUTH] runs as a named route")
	eq(t, "AUTH", gotName)
	eq(t, KindRequest, c.Kind(), "the caller's kind is restored")
	eq(t, "", c.RouteName(), "the caller's name is restored")
	eq(t, OutcomeReplied, c.Outcome(), "route[AUTH] ran with the caller's Context")
	v, _ := c.Attr("authed")
	eq(t, true, v)
	needEq(t, 1, len(rec.replies))
	eq(t, 403, rec.replies[0].code)
}

func TestContextRouteNestedAndError(t *testing.T) {
	c, rec, _ := newCtx(t)
	boom := errors.New("boom")
	var trail []string
	need(t, rec.table.Route("OUTER", HandlerFunc(func(c *Context) error {
		trail = append(trail, "outer:"+c.RouteName())
		if err := c.Route("INNER"); err != nil {
			trail = append(trail, "back:"+c.RouteName())
			return err
		}
		return nil
	})))
	need(t, rec.table.Route("INNER", HandlerFunc(func(c *Context) error {
		trail = append(trail, "inner:"+c.RouteName())
		return boom
	})))

	c = NewContext(ContextOptions{Engine: rec, Tx: c.Tx(), Kind: KindFailure, Name: "MISSED"})
	err := c.Route("OUTER")
	errIs(t, err, boom, "the route's error is returned to the caller")
	eq(t, []string{"outer:OUTER", "inner:INNER", "back:OUTER"}, trail)
	eq(t, KindFailure, c.Kind(), "kind restored after an error")
	eq(t, "MISSED", c.RouteName(), "name restored after an error")
}

func TestContextRouteUnknown(t *testing.T) {
	c, rec, _ := newCtx(t)
	need(t, rec.table.Failure("ONLY_FAILURE", nop))
	errIs(t, c.Route("NOPE"), ErrUnknownRoute)
	errIs(t, c.Route("ONLY_FAILURE"), ErrUnknownRoute, "Route runs named routes only")
	eq(t, KindRequest, c.Kind())
	eq(t, OutcomeNone, c.Outcome())
}

func TestContextResumeReason(t *testing.T) {
	tt, tx := newTx(t)
	c := NewContext(ContextOptions{Tx: tx})
	eq(t, transaction.ReasonNone, c.ResumeReason(), "a first run is not a resume")
	eq[any](t, c.ResumeValue(), nil)

	tok, err := tt.Suspend(tx, transaction.Suspension{Route: "RESUME", Value: "from-suspend"})
	need(t, err)
	rtx, err := tt.Continue(tok, transaction.ReasonTimer, nil)
	need(t, err)
	c = NewContext(ContextOptions{Tx: rtx, Kind: KindNamed, Name: "RESUME"})
	eq(t, transaction.ReasonTimer, c.ResumeReason())
	eq(t, "from-suspend", c.ResumeValue(), "the suspension's value reaches the resumed route")

	tok, err = tt.Suspend(rtx, transaction.Suspension{Route: "RESUME", Value: "from-suspend"})
	need(t, err)
	rtx, err = tt.Continue(tok, transaction.ReasonExternal, 7)
	need(t, err)
	c = NewContext(ContextOptions{Tx: rtx, Kind: KindNamed, Name: "RESUME"})
	eq(t, transaction.ReasonExternal, c.ResumeReason())
	eq(t, 7, c.ResumeValue(), "a value given to Continue wins")

	noTx := NewContext(ContextOptions{Kind: KindEvent})
	eq(t, transaction.ReasonNone, noTx.ResumeReason())
	eq[any](t, noTx.ResumeValue(), nil)
}
