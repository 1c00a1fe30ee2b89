package transaction

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenStringParseRoundTrip(t *testing.T) {
	for _, tok := range []Token{{0, 0, 0}, {0, 1, 0}, {7, 3, 0}, {1 << 20, 42, 0}, {math.MaxUint32, math.MaxUint32, 0},
		{0, 1, 1}, {7, 3, 65537}, {math.MaxUint32, math.MaxUint32, math.MaxUint32}} {
		s := tok.String()
		got, err := ParseToken(s)
		assert.NoError(t, err, "ParseToken(%q)", s)
		assert.Equal(t, tok, got, "round trip of %q", s)
	}
	assert.Equal(t, "12:34", Token{12, 34, 0}.String())
	assert.Equal(t, "12:34:5", Token{12, 34, 5}.String())
}

func TestParseTokenMalformed(t *testing.T) {
	for _, s := range []string{
		"", ":", "1", "1:", ":1", "a:1", "1:b", "-1:2", "1:-2", "+1:2", " 1:2", "1:2 ",
		"1:2:3:4", "1:2:0", "1:2:", "1:2:x", "4294967296:1", "1:4294967296", "1:2:4294967296", "0x1:2", "1.0:2", "1;2",
	} {
		_, err := ParseToken(s)
		assert.ErrorIs(t, err, ErrBadToken, "ParseToken(%q)", s)
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"0:0", "1:2", "4294967295:4294967295", "", "1:2:3", "a:b", "-1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken(%q): error %v is not ErrBadToken", s, err)
			}
			return
		}
		back, err := ParseToken(tok.String())
		if err != nil || back != tok {
			t.Fatalf("ParseToken(%q) = %v; re-parse of %q = %v, %v", s, tok, tok.String(), back, err)
		}
	})
}

func TestStringers(t *testing.T) {
	assert.Equal(t, "live", Live.String())
	assert.Equal(t, "suspended", Suspended.String())
	assert.Equal(t, "done", Done.String())
	assert.Equal(t, "unknown", State(0).String())
	for r, want := range map[Reason]string{ReasonNone: "none", ReasonTimer: "timer", ReasonTask: "task",
		ReasonExternal: "external", ReasonTimeout: "timeout", ReasonCancel: "cancel", Reason(99): "unknown"} {
		assert.Equal(t, want, r.String())
	}
	for e, want := range map[Event]string{EvSuspended: "suspended", EvResumed: "resumed",
		EvExpired: "expired", EvCanceled: "canceled", EvEnded: "ended"} {
		assert.Equal(t, want, e.String())
	}
}

func TestAddAssignsTokens(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	tt := New(Options{Clock: mock})
	seen := map[Token]bool{}
	var txs []*Tx
	for i := range 5 {
		req := newReq(sip.INVITE)
		tx, err := tt.Add(req, nil)
		require.NoError(t, err)
		tok := tx.Token()
		assert.True(t, !seen[tok], "token %s given twice", tok)
		seen[tok] = true
		assert.Equal(t, uint32(i), tok.Index, "fresh slots are taken in order")
		assert.Equal(t, uint32(1), tok.Label, "a fresh slot's first label")
		assert.Equal(t, Live, tx.State())
		assert.True(t, tx.Request() == req, "the request is kept")
		assert.True(t, tx.ServerTx() == nil, "no server transaction")
		assert.Equal(t, mock.Now(), tx.Created())
		assert.Equal(t, 0, tx.Parks())
		got, err := tt.Get(tok)
		require.NoError(t, err)
		assert.True(t, got == tx, "Get returns the transaction of the token")
		txs = append(txs, tx)
	}
	st := tt.Stats()
	assert.Equal(t, 5, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, uint64(5), st.Created)
	for _, tx := range txs {
		tt.Finish(tx)
	}
	assert.Equal(t, 0, tt.Stats().Live)
}

func TestGetUnknownToken(t *testing.T) {
	tt := New(Options{})
	_, err := tt.Get(Token{0, 1, 0})
	assert.ErrorIs(t, err, ErrUnknownToken, "empty table")
	tx, err := tt.Add(newReq(sip.MESSAGE), nil)
	require.NoError(t, err)
	_, err = tt.Get(Token{tx.Token().Index + 1, 1, 0})
	assert.ErrorIs(t, err, ErrUnknownToken, "index past the table")
	_, err = tt.Get(Token{tx.Token().Index, tx.Token().Label + 1, 0})
	assert.ErrorIs(t, err, ErrUnknownToken, "a label from the future is not found")
	assert.Equal(t, uint64(0), tt.Stats().StaleRefused, "none of these is stale")
}

func TestGetAfterFinish(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.MESSAGE), nil)
	require.NoError(t, err)
	tok := tx.Token()
	tt.Finish(tx)
	assert.Equal(t, Done, tx.State())
	_, err = tt.Get(tok)
	assert.ErrorIs(t, err, ErrEnded)
	assert.True(t, !errors.Is(err, ErrStale), "the slot is not reused yet: not stale")
	assert.Equal(t, uint64(1), tt.Stats().EndedRefused)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrEnded, "resume after end is an error, not a crash")
	_, err = tt.Continue(Token{tok.Index, tok.Label, 1}, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrUnknownToken, "a park it never had")
}

func TestSlotReuseRefusesStaleToken(t *testing.T) {
	mock := clock.NewMock()
	tt := New(Options{Clock: mock, SuspendTimeout: 10 * time.Second})
	old, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	oldTok, err := tt.Suspend(old, Suspension{Route: "RESUME"})
	require.NoError(t, err)
	assert.True(t, tt.Expire(oldTok), "expire the first transaction")

	// The slot of a parked transaction is remembered for Remember (the
	// suspend timeout), so that a late token is told it timed out.
	other, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.True(t, other.Token().Index != oldTok.Index, "a remembered slot is not reused at once")
	_, err = tt.Continue(oldTok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrTimedOut, "while remembered, the token is told how its park ended")
	tt.Finish(other) // never parked: its slot is free at once
	mock.Add(10 * time.Second)

	cur, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.Equal(t, other.Token().Index, cur.Token().Index, "a slot never parked is reused first")
	cur2, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	curTok := cur2.Token()
	assert.Equal(t, oldTok.Index, curTok.Index, "the remembered slot is reused once Remember passed")
	assert.Equal(t, oldTok.Label+1, curTok.Label, "reuse bumps the label")
	curTok, err = tt.Suspend(cur2, Suspension{Route: "RESUME"})
	require.NoError(t, err)

	_, err = tt.Get(oldTok)
	require.ErrorIs(t, err, ErrStale)
	assert.ErrorIs(t, err, ErrEnded, "a stale token's transaction ended")
	assert.Equal(t, uint64(1), tt.Stats().StaleRefused)

	_, err = tt.Continue(oldTok, ReasonTimer, nil)
	assert.ErrorIs(t, err, ErrStale, "a stale resume is refused")
	assert.True(t, !tt.Expire(oldTok), "a stale expiry does nothing")
	assert.True(t, !tt.Abort(oldTok, 503, "Service Unavailable"), "a stale abort does nothing")
	assert.Equal(t, uint64(4), tt.Stats().StaleRefused, "every stale use is counted")

	assert.Equal(t, Suspended, cur2.State(), "the current transaction is untouched")
	got, err := tt.Continue(curTok, ReasonTimer, nil)
	require.NoError(t, err)
	assert.True(t, got == cur2)
	tt.Finish(cur)
	tt.Finish(cur2)
}

func TestRememberedSlotsAreBounded(t *testing.T) {
	mock := clock.NewMock()
	tt := New(Options{Clock: mock, MaxRemembered: 4})
	var txs []*Tx
	var toks []Token
	for range 6 {
		tx, err := tt.Add(newReq(sip.MESSAGE), nil)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		txs, toks = append(txs, tx), append(toks, tok)
	}
	for i, tx := range txs {
		_, err := tt.Continue(toks[i], ReasonExternal, nil)
		require.NoError(t, err)
		tt.Finish(tx)
	}
	// At most four are remembered: the two oldest were forgotten and are
	// free again; the next adds take them, then a new slot.
	got := map[uint32]bool{}
	for range 2 {
		tx, err := tt.Add(newReq(sip.MESSAGE), nil)
		require.NoError(t, err)
		got[tx.Token().Index] = true
	}
	assert.Equal(t, map[uint32]bool{toks[0].Index: true, toks[1].Index: true}, got, "the forgotten slots are reused")
	tx, err := tt.Add(newReq(sip.MESSAGE), nil)
	require.NoError(t, err)
	assert.Equal(t, uint32(6), tx.Token().Index, "four remembered: a new slot")
	_, err = tt.Continue(toks[0], ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrStale, "a forgotten park: ended, slot reused")
	_, err = tt.Continue(toks[2], ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "a remembered park: already resumed")
}

func TestRefusalReasons(t *testing.T) {
	mock := clock.NewMock()
	tt := New(Options{Clock: mock})
	park := func(m sip.RequestMethod) (*Tx, Token) {
		tx, err := tt.Add(newReq(m), nil)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		return tx, tok
	}
	// resumed, then answered
	tx, tok := park(sip.MESSAGE)
	_, err := tt.Continue(tok, ReasonExternal, nil)
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "live after the resume")
	tt.Finish(tx)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "after the end too")
	assert.Equal(t, "already_resumed", RefusalReason(err))

	// timed out into a timeout route (ReasonTimeout), then a late resume
	tx, tok = park(sip.MESSAGE)
	_, err = tt.Continue(tok, ReasonTimeout, nil)
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrTimedOut)
	assert.Equal(t, "timed_out", RefusalReason(err))
	tok2, err := tt.Suspend(tx, Suspension{}) // the timeout route parks again
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrTimedOut, "the earlier park stays timed out while the next one waits")
	assert.True(t, tt.Expire(tok2))
	_, err = tt.Continue(tok2, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrTimedOut, "expired: timed out")
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrTimedOut, "the first park, after the end")

	// aborted (shutdown, control)
	_, tok = park(sip.MESSAGE)
	assert.True(t, tt.Abort(tok, 503, "Service Unavailable"))
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrEnded)
	assert.Equal(t, "ended", RefusalReason(err))

	// a park number past the transaction's parks, and a park 17 back
	tx, tok = park(sip.MESSAGE)
	_, err = tt.Continue(Token{tok.Index, tok.Label, 2}, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrUnknownToken)
	assert.Equal(t, "unknown_token", RefusalReason(err))
	first := tok
	for range 17 {
		_, err = tt.Continue(tok, ReasonExternal, nil)
		require.NoError(t, err)
		tok, err = tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
	}
	_, err = tt.Continue(first, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "beyond the 16 parks of history")
	assert.Equal(t, "", RefusalReason(errors.New("other")))
}

func TestParkLimit(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.MESSAGE), nil)
	require.NoError(t, err)
	tx.parks = math.MaxUint32 - 1
	tx.hist.n = tx.parks
	tok, err := tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	assert.Equal(t, uint32(math.MaxUint32), tok.Park)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	require.NoError(t, err)
	_, err = tt.Suspend(tx, Suspension{})
	assert.ErrorIs(t, err, ErrParkLimit, "the park number never wraps")
	assert.Equal(t, Live, tx.State(), "the refused park leaves it to its route")
}

func TestSlotReuseManyGenerations(t *testing.T) {
	tt := New(Options{})
	var toks []Token
	for range 10 {
		tx, err := tt.Add(newReq(sip.OPTIONS), nil)
		require.NoError(t, err)
		toks = append(toks, tx.Token())
		tt.Finish(tx)
	}
	for i, tok := range toks {
		assert.Equal(t, uint32(0), tok.Index, "one slot serves them all")
		assert.Equal(t, uint32(i+1), tok.Label)
	}
	cur, err := tt.Add(newReq(sip.OPTIONS), nil)
	require.NoError(t, err)
	for _, tok := range toks {
		_, err := tt.Get(tok)
		assert.ErrorIs(t, err, ErrStale, "token %s", tok)
	}
	tt.Finish(cur)
}

func TestSuspendContinueTwice(t *testing.T) {
	// Suspend → resume → suspend again on the same transaction (Kamailio #645).
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tx.SetAttr("caller", "alice")

	for park := 1; park <= 3; park++ {
		tok, err := tt.Suspend(tx, Suspension{Route: fmt.Sprintf("R%d", park), Kind: "route"})
		require.NoError(t, err, "park %d", park)
		assert.Equal(t, tx.Token(), tok.Tx(), "the transaction stays the same across parks")
		assert.Equal(t, uint32(park), tok.Park, "each park has a token of its own")
		assert.Equal(t, Suspended, tx.State())
		assert.Equal(t, park, tx.Parks())
		assert.Equal(t, fmt.Sprintf("R%d", park), tx.Suspension().Route)
		assert.Equal(t, 1, tt.Stats().Parked)

		got, err := tt.Continue(tok, ReasonTimer, nil)
		require.NoError(t, err, "resume %d", park)
		assert.True(t, got == tx)
		assert.Equal(t, Live, tx.State())
		assert.Equal(t, 0, tt.Stats().Parked)
		v, ok := got.Attr("caller")
		assert.True(t, ok && v == "alice", "attributes survive park %d", park)
		got.SetAttr(fmt.Sprintf("park%d", park), true)
	}
	st := tt.Stats()
	assert.Equal(t, uint64(3), st.Suspends)
	assert.Equal(t, uint64(3), st.Resumes)
	assert.Equal(t, 1, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, 4, len(tx.Attrs()), "attributes set between parks accumulate")
	tt.Finish(tx)
	st = tt.Stats()
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
}

func TestContinueLiveTransaction(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	_, err = tt.Continue(tx.Token(), ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrUnknownToken, "a transaction's own token names no park")
	_, err = tt.Continue(Token{tx.Token().Index, tx.Token().Label, 1}, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrUnknownToken, "a park not made yet")
	assert.Equal(t, Live, tx.State())
	assert.Equal(t, uint64(0), tt.Stats().Resumes)
}

func TestDoubleContinue(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tok, err := tt.Suspend(tx, Suspension{Route: "RESUME"})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonTask, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "a token resumes once")
	tok2, err := tt.Suspend(tx, Suspension{Route: "RESUME"})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonExternal, nil)
	assert.ErrorIs(t, err, ErrAlreadyResumed, "nor does it resume the next park")
	assert.Equal(t, Suspended, tx.State())
	_, err = tt.Continue(tok2, ReasonTimer, nil)
	require.NoError(t, err)
	r, _ := tx.ResumeReason()
	assert.Equal(t, ReasonTimer, r, "the refused resume changes nothing")
	st := tt.Stats()
	assert.Equal(t, uint64(2), st.Resumes)
	assert.Equal(t, 0, st.Parked, "the parked count does not go below zero")
}

func TestSuspendNotLive(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	_, err = tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	_, err = tt.Suspend(tx, Suspension{})
	assert.ErrorIs(t, err, ErrNotLive, "a parked transaction cannot park again")
	assert.Equal(t, 1, tx.Parks())
	assert.Equal(t, 1, tt.Stats().Parked)

	done, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tt.Finish(done)
	_, err = tt.Suspend(done, Suspension{})
	assert.ErrorIs(t, err, ErrNotLive, "an ended transaction cannot park")
	assert.Equal(t, 1, tt.Stats().Parked)
	assert.Equal(t, uint64(1), tt.Stats().Suspends)
}

func TestResumeReasonAndValue(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	r, v := tx.ResumeReason()
	assert.Equal(t, ReasonNone, r, "a first run is not a resume")
	assert.Equal(t, nil, v)

	type payload struct{ N int }
	tok, err := tt.Suspend(tx, Suspension{Value: payload{1}})
	require.NoError(t, err)
	assert.Equal(t, payload{1}, tx.Suspension().Value)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	r, v = tx.ResumeReason()
	assert.Equal(t, ReasonTimer, r)
	assert.Equal(t, payload{1}, v, "no value at resume: the suspension's value")

	tok, err = tt.Suspend(tx, Suspension{Value: payload{2}})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonExternal, "from-outside")
	require.NoError(t, err)
	r, v = tx.ResumeReason()
	assert.Equal(t, ReasonExternal, r)
	assert.Equal(t, "from-outside", v, "a value given at resume wins")

	tok, err = tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonTask, nil)
	require.NoError(t, err)
	r, v = tx.ResumeReason()
	assert.Equal(t, ReasonTask, r)
	assert.Equal(t, nil, v, "the value of an earlier park does not leak into a later one")
}

func TestMaxParked(t *testing.T) {
	tt := New(Options{MaxParked: 2})
	var txs []*Tx
	for range 3 {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		txs = append(txs, tx)
	}
	tok0, err := tt.Suspend(txs[0], Suspension{})
	require.NoError(t, err)
	_, err = tt.Suspend(txs[1], Suspension{})
	require.NoError(t, err)
	_, err = tt.Suspend(txs[2], Suspension{})
	assert.ErrorIs(t, err, ErrTooMany)
	assert.Equal(t, Live, txs[2].State(), "the refused transaction stays live for its route to answer")
	assert.Equal(t, 0, txs[2].Parks())
	st := tt.Stats()
	assert.Equal(t, uint64(1), st.Rejected)
	assert.Equal(t, 2, st.Parked)
	assert.Equal(t, uint64(2), st.Suspends)

	_, err = tt.Continue(tok0, ReasonTimer, nil)
	require.NoError(t, err)
	_, err = tt.Suspend(txs[2], Suspension{})
	assert.NoError(t, err, "room again after a resume")
}

func TestMaxLive(t *testing.T) {
	tt := New(Options{MaxLive: 3})
	var txs []*Tx
	for range 3 {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		txs = append(txs, tx)
	}
	_, err := tt.Suspend(txs[0], Suspension{})
	require.NoError(t, err)
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	assert.ErrorIs(t, err, ErrTableFull, "suspended transactions count against MaxLive")
	assert.True(t, tx == nil)
	st := tt.Stats()
	assert.Equal(t, uint64(1), st.Rejected)
	assert.Equal(t, 3, st.Live)
	assert.Equal(t, uint64(3), st.Created)

	tt.Finish(txs[1])
	_, err = tt.Add(newReq(sip.INVITE), nil)
	assert.NoError(t, err, "room again after Finish")
	assert.True(t, tt.Expire(txs[0].Token()))
	_, err = tt.Add(newReq(sip.INVITE), nil)
	assert.NoError(t, err, "room again after Expire")
}

func TestMaxParkedDefaultsAndClamp(t *testing.T) {
	tt := New(Options{MaxLive: 2, MaxParked: 10})
	for range 2 {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		_, err = tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
	}
	_, err := tt.Add(newReq(sip.INVITE), nil)
	assert.ErrorIs(t, err, ErrTableFull)
	def := New(Options{}).SuspendTimeout()
	assert.True(t, def > 100*time.Second, "the default suspend timeout (%s) outlasts the longest timed park (100s)", def)
	assert.Equal(t, 3*time.Second, New(Options{SuspendTimeout: 3 * time.Second}).SuspendTimeout())
}

func TestSuspensionDeadline(t *testing.T) {
	mock := clock.NewMock()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mock.Set(start)
	tt := New(Options{Clock: mock, SuspendTimeout: 5 * time.Second})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)

	mock.Add(1500 * time.Millisecond)
	tok, err := tt.Suspend(tx, Suspension{Route: "RESUME", Kind: "ms_route", Timeout: 250 * time.Millisecond})
	require.NoError(t, err)
	s := tx.Suspension()
	assert.Equal(t, start.Add(1500*time.Millisecond), s.Since, "Since is the mock clock's now")
	assert.Equal(t, s.Since.Add(250*time.Millisecond), s.Deadline, "Deadline = Since + Timeout")
	assert.Equal(t, 250*time.Millisecond, s.Timeout)
	assert.Equal(t, "RESUME", s.Route)
	assert.Equal(t, "ms_route", s.Kind)

	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	mock.Add(time.Minute)
	_, err = tt.Suspend(tx, Suspension{Route: "AGAIN"})
	require.NoError(t, err)
	s = tx.Suspension()
	assert.Equal(t, start.Add(1500*time.Millisecond+time.Minute), s.Since)
	assert.Equal(t, 5*time.Second, s.Timeout, "Timeout 0 takes the table's SuspendTimeout")
	assert.Equal(t, s.Since.Add(5*time.Second), s.Deadline)

	tt2 := New(Options{Clock: mock})
	tx2, err := tt2.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	_, err = tt2.Suspend(tx2, Suspension{Timeout: -time.Second})
	require.NoError(t, err)
	def := tt2.SuspendTimeout()
	assert.Equal(t, def, tx2.Suspension().Timeout, "a negative timeout takes the table's default")
	assert.Equal(t, mock.Now().Add(def), tx2.Suspension().Deadline)
}

func TestExpire(t *testing.T) {
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.MESSAGE} {
		t.Run(string(m), func(t *testing.T) {
			var ev events
			tt := New(Options{OnChange: ev.on})
			tx, err := tt.Add(newReq(m), nil)
			require.NoError(t, err)
			tok, err := tt.Suspend(tx, Suspension{})
			require.NoError(t, err)

			assert.True(t, tt.Expire(tok), "a suspended transaction expires")
			assert.True(t, !tt.Expire(tok), "and only once")
			assert.Equal(t, Done, tx.State())
			st := tt.Stats()
			assert.Equal(t, 0, st.Live, "the slot is freed")
			assert.Equal(t, 0, st.Parked)
			assert.Equal(t, uint64(1), st.Expired)
			_, err = tt.Get(tok)
			assert.ErrorIs(t, err, ErrTimedOut)
			_, err = tt.Continue(tok, ReasonTimer, nil)
			assert.ErrorIs(t, err, ErrTimedOut, "the pending resume after expiry is refused, as timed out")
			assert.Equal(t, []Event{EvSuspended, EvExpired}, ev.of(tok))

			next, err := tt.Add(newReq(m), nil)
			require.NoError(t, err)
			assert.True(t, tok.Index != next.Token().Index, "the slot is remembered, not taken again at once")
		})
	}
}

func TestExpireNotSuspended(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.True(t, !tt.Expire(tx.Token()), "a live transaction does not expire")

	tok, err := tt.Suspend(tx, Suspension{})
	require.NoError(t, err)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	assert.True(t, !tt.Expire(tok), "a resumed transaction does not expire")
	assert.Equal(t, Live, tx.State())
	st := tt.Stats()
	assert.Equal(t, uint64(0), st.Expired)
	assert.Equal(t, 1, st.Live)
	assert.True(t, !tt.Expire(Token{99, 1, 1}), "an unknown token does not expire")
}

func TestAbort(t *testing.T) {
	var ev events
	tt := New(Options{OnChange: ev.on})
	live, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	parked, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tok, err := tt.Suspend(parked, Suspension{})
	require.NoError(t, err)

	assert.True(t, !tt.Abort(live.Token(), 503, "Service Unavailable"), "a live transaction is its route's")
	assert.Equal(t, Live, live.State())
	assert.True(t, tt.Abort(tok, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5")))
	assert.True(t, !tt.Abort(tok, 503, "Service Unavailable"), "only once")
	assert.Equal(t, Done, parked.State())
	assert.Equal(t, []Event{EvSuspended, EvEnded}, ev.of(tok))
	st := tt.Stats()
	assert.Equal(t, 1, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, uint64(0), st.Expired, "an abort is not an expiry")
	_, err = tt.Continue(tok, ReasonTimer, nil)
	assert.ErrorIs(t, err, ErrEnded)
	assert.True(t, errors.Is(err, ErrEnded) && !errors.Is(err, ErrTimedOut) && !errors.Is(err, ErrCanceled), "answered while parked: ended, nothing more")
}

func TestOnChangeEvents(t *testing.T) {
	var ev events
	tt := New(Options{OnChange: ev.on})

	a, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tokA, err := tt.Suspend(a, Suspension{})
	require.NoError(t, err)
	_, err = tt.Continue(tokA, ReasonTimer, nil)
	require.NoError(t, err)
	tokA2, err := tt.Suspend(a, Suspension{})
	require.NoError(t, err)
	assert.True(t, !tt.Expire(tokA), "the first park's token does not expire the second")
	assert.True(t, tt.Expire(tokA2))

	b, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tokB, err := tt.Suspend(b, Suspension{})
	require.NoError(t, err)
	_, err = tt.Continue(tokB, ReasonTask, nil)
	require.NoError(t, err)
	tt.Finish(b)
	tt.Finish(b)

	c, err := tt.Add(newReq(sip.OPTIONS), nil)
	require.NoError(t, err)
	tt.Finish(c)

	assert.Equal(t, []Event{EvSuspended, EvResumed, EvSuspended, EvExpired}, ev.of(tokA))
	assert.Equal(t, []Event{EvSuspended, EvResumed, EvEnded}, ev.of(tokB), "Finish twice reports one end")
	assert.Equal(t, []Event{EvEnded}, ev.of(c.Token()))
	assert.Equal(t, 8, len(ev.log), "no other events")

	// Refused operations report nothing.
	_, _ = tt.Continue(tokA, ReasonTimer, nil)
	tt.Expire(tokB)
	assert.Equal(t, 8, len(ev.log))
}

func TestOnChangeRunsWithoutLocks(t *testing.T) {
	// The callback may use the table and the transaction: no lock is held.
	var tt *Table
	var seen []string
	tt = New(Options{OnChange: func(tx *Tx, ev Event) {
		st := tt.Stats()
		seen = append(seen, fmt.Sprintf("%s:%s:parked=%d", ev, tx.State(), st.Parked))
		_ = tt.ParkedTokens()
		tx.SetAttr("last", ev.String())
	}})
	within(t, "table operations with a re-entrant OnChange", func() {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		_, err = tt.Continue(tok, ReasonTimer, nil)
		require.NoError(t, err)
		tok, err = tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		tt.Abort(tok, 503, "Service Unavailable")
		tx2, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		tok2, err := tt.Suspend(tx2, Suspension{})
		require.NoError(t, err)
		tt.Expire(tok2)
		tx3, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		tt.Finish(tx3)
	})
	assert.Equal(t, []string{
		"suspended:suspended:parked=1", "resumed:live:parked=0",
		"suspended:suspended:parked=1", "ended:done:parked=0",
		"suspended:suspended:parked=1", "expired:done:parked=0",
		"ended:done:parked=0",
	}, seen)
}

func TestFinish(t *testing.T) {
	tt := New(Options{})
	a, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tt.Finish(a)
	tt.Finish(a)
	assert.Equal(t, 0, tt.Stats().Live, "Finish twice frees once")

	b, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.Equal(t, a.Token().Index, b.Token().Index)
	tt.Finish(a) // a late Finish of the old transaction must not free b's slot
	got, err := tt.Get(b.Token())
	require.NoError(t, err, "b survives a late Finish of the slot's previous transaction")
	assert.True(t, got == b)
	assert.Equal(t, 1, tt.Stats().Live)

	c, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.Equal(t, b.Token().Index+1, c.Token().Index, "b's slot was not handed out again")

	tok, err := tt.Suspend(b, Suspension{})
	require.NoError(t, err)
	tt.Finish(b)
	assert.Equal(t, Suspended, b.State(), "Finish leaves a parked transaction to the engine")
	assert.Equal(t, 1, tt.Stats().Parked)
	_, err = tt.Continue(tok, ReasonTimer, nil)
	require.NoError(t, err)
	tt.Finish(b)
	tt.Finish(c)
	st := tt.Stats()
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
}

func TestFinishAfterExpire(t *testing.T) {
	tt := New(Options{})
	a, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tok, err := tt.Suspend(a, Suspension{})
	require.NoError(t, err)
	assert.True(t, tt.Expire(tok))
	b, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	tt.Finish(a)
	_, err = tt.Get(b.Token())
	assert.NoError(t, err, "a Finish after Expire does not touch the slot's new owner")
	assert.Equal(t, 1, tt.Stats().Live)
}

func TestParkedLists(t *testing.T) {
	tt := New(Options{})
	var txs []*Tx
	for range 5 {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		txs = append(txs, tx)
	}
	assert.Equal(t, 0, len(tt.ParkedTokens()))
	assert.Equal(t, 0, len(tt.Parked()))
	for _, i := range []int{1, 3, 4} {
		_, err := tt.Suspend(txs[i], Suspension{})
		require.NoError(t, err)
	}
	assert.Equal(t, []Token{txs[1].ParkToken(), txs[3].ParkToken(), txs[4].ParkToken()}, tt.ParkedTokens())
	assert.Equal(t, uint32(1), txs[1].ParkToken().Park)
	parked := tt.Parked()
	assert.Equal(t, 3, len(parked))
	for i, tx := range parked {
		assert.True(t, tx == txs[[]int{1, 3, 4}[i]], "Parked()[%d]", i)
	}

	_, err := tt.Continue(txs[1].ParkToken(), ReasonTimer, nil)
	require.NoError(t, err)
	assert.True(t, tt.Expire(txs[4].Token()), "a transaction token expires whichever park is current")
	assert.Equal(t, []Token{txs[3].ParkToken()}, tt.ParkedTokens(), "resumed and expired ones are gone")
	tt.Finish(txs[0])
	assert.Equal(t, []Token{txs[3].ParkToken()}, tt.ParkedTokens())
}

func TestAttrs(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	_, ok := tx.Attr("x")
	assert.True(t, !ok)
	tx.DelAttr("x") // on a nil map: harmless
	tx.SetAttr("x", 1)
	tx.SetAttr("y", "two")
	all := tx.Attrs()
	assert.Equal(t, map[string]any{"x": 1, "y": "two"}, all)
	all["z"] = 3
	_, ok = tx.Attr("z")
	assert.True(t, !ok, "Attrs returns a copy")
	tx.DelAttr("x")
	_, ok = tx.Attr("x")
	assert.True(t, !ok)
	assert.Equal(t, map[string]any{"y": "two"}, tx.Attrs())
}

func TestRespondWithoutServerTx(t *testing.T) {
	tt := New(Options{})
	tx, err := tt.Add(newReq(sip.INVITE), nil)
	require.NoError(t, err)
	assert.ErrorIs(t, tx.Reply(200, "OK", nil), ErrNoServerTx)
	assert.True(t, !tx.FinalSent(), "nothing was sent")
	assert.True(t, !tx.Canceled())
	_, err = tt.Suspend(tx, Suspension{})
	assert.NoError(t, err, "a failed reply does not block a park")
}

func TestConcurrentAddSuspendContinueFinish(t *testing.T) {
	const workers, perWorker = 16, 200
	var resumed, ended atomic.Int64
	tt := New(Options{OnChange: func(_ *Tx, ev Event) {
		switch ev {
		case EvResumed:
			resumed.Add(1)
		case EvEnded:
			ended.Add(1)
		}
	}})
	toks := make(chan Token, 64)
	var parkers, resumers sync.WaitGroup
	for w := range workers {
		parkers.Go(func() {
			for i := range perWorker {
				tx, err := tt.Add(newReq(sip.INVITE), nil)
				if err != nil {
					t.Errorf("Add: %v", err)
					return
				}
				tx.SetAttr("who", w*perWorker+i)
				tok, err := tt.Suspend(tx, Suspension{Route: "RESUME"})
				if err != nil {
					t.Errorf("Suspend: %v", err)
					return
				}
				toks <- tok
			}
		})
	}
	for range workers / 2 {
		resumers.Go(func() {
			for tok := range toks {
				tx, err := tt.Continue(tok, ReasonTimer, nil)
				if err != nil {
					t.Errorf("Continue %s: %v", tok, err)
					continue
				}
				// Park again and resume again (#645), then end.
				tok, err = tt.Suspend(tx, Suspension{})
				if err != nil {
					t.Errorf("second Suspend: %v", err)
					continue
				}
				if _, err := tt.Continue(tok, ReasonTask, nil); err != nil {
					t.Errorf("second Continue: %v", err)
					continue
				}
				if _, ok := tx.Attr("who"); !ok {
					t.Errorf("%s lost its attribute", tok)
				}
				tt.Finish(tx)
			}
		})
	}
	stop := make(chan struct{})
	var observer sync.WaitGroup
	observer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := tt.Stats()
			if st.Parked < 0 || st.Live < 0 || st.Parked > st.Live {
				t.Errorf("inconsistent stats %+v", st)
				return
			}
			_ = tt.ParkedTokens()
		}
	})
	parkers.Wait()
	close(toks)
	resumers.Wait()
	close(stop)
	observer.Wait()

	const n = workers * perWorker
	st := tt.Stats()
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, uint64(n), st.Created)
	assert.Equal(t, uint64(2*n), st.Suspends)
	assert.Equal(t, uint64(2*n), st.Resumes)
	assert.Equal(t, int64(2*n), resumed.Load())
	assert.Equal(t, int64(n), ended.Load())
	assert.Equal(t, 0, len(tt.ParkedTokens()))
}

func TestExpireContinueRace(t *testing.T) {
	const rounds = 500
	tt := New(Options{})
	var expiredWins, continueWins int
	for range rounds {
		tx, err := tt.Add(newReq(sip.INVITE), nil)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)

		start := make(chan struct{})
		var wg sync.WaitGroup
		var expired bool
		var resumed *Tx
		var cerr error
		wg.Go(func() { <-start; expired = tt.Expire(tok) })
		wg.Go(func() { <-start; resumed, cerr = tt.Continue(tok, ReasonTimer, nil) })
		close(start)
		wg.Wait()

		if expired == (cerr == nil) {
			t.Fatalf("expired=%v continue err=%v: exactly one must win", expired, cerr)
		}
		if expired {
			expiredWins++
			assert.Equal(t, Done, tx.State())
		} else {
			continueWins++
			assert.True(t, resumed == tx)
			assert.Equal(t, Live, tx.State())
			tt.Finish(tx)
		}
	}
	st := tt.Stats()
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
	assert.Equal(t, uint64(rounds), st.Expired+st.Resumes)
	assert.Equal(t, uint64(expiredWins), st.Expired)
	assert.Equal(t, uint64(continueWins), st.Resumes)
}

func TestAbortContinueRace(t *testing.T) {
	const rounds = 300
	tt := New(Options{})
	for range rounds {
		tx, err := tt.Add(newReq(sip.MESSAGE), nil)
		require.NoError(t, err)
		tok, err := tt.Suspend(tx, Suspension{})
		require.NoError(t, err)
		var wg sync.WaitGroup
		var aborted bool
		var cerr error
		wg.Go(func() { aborted = tt.Abort(tok, 503, "Service Unavailable") })
		wg.Go(func() { _, cerr = tt.Continue(tok, ReasonTimer, nil) })
		wg.Wait()
		if aborted == (cerr == nil) {
			t.Fatalf("aborted=%v continue err=%v: exactly one must win", aborted, cerr)
		}
		if !aborted {
			tt.Finish(tx)
		}
	}
	st := tt.Stats()
	assert.Equal(t, 0, st.Live)
	assert.Equal(t, 0, st.Parked)
}
