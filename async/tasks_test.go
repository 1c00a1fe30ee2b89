package async_test

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/internal/siptest"
	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
	"github.com/sipasync/sipasync/workergroups"
)

// completed returns a group's completed task count.
func completed(h *harness, name string) uint64 { return h.group(name).Stats().Completed }

func TestTaskRouteResumesOnDefaultGroup(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=abc;workers=1;nonblock=0;usleep=0", "name=tkv;workers=1;nonblock=0"},
		tkvGroup: "tkv"})
	h.route("R", replyOK)
	tx, c, w := h.request("INVITE")
	c.SetAttr("k", 1)
	require.NoError(t, async.TaskRoute(c, "R"))
	require.Equal(t, routes.OutcomeParked, c.Outcome())
	r := h.next()
	require.Equal(t, "R", r.name)
	require.Equal(t, routes.KindNamed, r.kind)
	require.Same(t, tx, r.tx)
	require.Equal(t, transaction.ReasonTask, r.reason)
	require.Nil(t, r.value)
	v, _ := r.tx.Attr("k")
	require.Equal(t, 1, v)
	require.Equal(t, []int{100, 200}, w.Codes())
	siptest.Eventually(t, "the default group ran it", func() bool { return completed(h, workergroups.DefaultName) == 1 })
	require.Zero(t, completed(h, "abc"))
	require.Zero(t, completed(h, "tkv"))
	require.Zero(t, h.e.Stats().WheelPending, "the task's deadline is disarmed")
	require.Zero(t, h.advance(200*time.Second))
	require.Zero(t, h.tbl.Stats().Expired)
	h.noRun()
}

func TestTaskGroupRouteResumesOnNamedGroup(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=abc;workers=4;nonblock=0;usleep=0"}})
	h.route("R", replyOK)
	tx, c, _ := h.request("MESSAGE")
	require.NoError(t, async.TaskGroupRouteValue(c, "R", "abc", "val"))
	require.Equal(t, routes.OutcomeParked, c.Outcome())
	r := h.next()
	require.Same(t, tx, r.tx)
	require.Equal(t, transaction.ReasonTask, r.reason)
	require.Equal(t, "val", r.value)
	siptest.Eventually(t, "group abc ran it", func() bool { return completed(h, "abc") == 1 })
	require.Zero(t, completed(h, workergroups.DefaultName))

	_, c, _ = h.request("MESSAGE")
	require.NoError(t, async.TaskGroupRoute(c, "R", "abc"))
	r = h.next()
	require.Equal(t, transaction.ReasonTask, r.reason)
	require.Nil(t, r.value)
	siptest.Eventually(t, "group abc ran both", func() bool { return completed(h, "abc") == 2 })
	require.Zero(t, h.e.Stats().WheelPending)
}

func TestTaskGroupRouteOverload(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=x;workers=1;nonblock=1"}, queues: map[string]int{"x": 2}})
	h.route("R", replyOK)
	x := h.group("x")
	g := siptest.NewGate(t)
	busy(t, x, g)
	for range 2 {
		require.NoError(t, x.Submit(g.Wait))
	}
	require.Equal(t, 2, x.Stats().Queued, "worker busy, queue full")

	tx, c, w := h.request("INVITE")
	c.SetAttr("k", "v")
	err := async.TaskGroupRoute(c, "R", "x")
	require.ErrorIs(t, err, workergroups.ErrOverload)
	h.requireNotParked(tx, c, "TaskGroupRoute to a saturated nonblock group")
	require.Equal(t, transaction.ReasonNone, c.ResumeReason(), "the caller's run is not a resume")

	// The caller still owns the transaction: its attributes are there and
	// it may answer.
	require.Equal(t, "v", c.AttrString("k"))
	require.NoError(t, c.Reply(503, "Service Unavailable"))
	require.Equal(t, 503, w.Codes()[len(w.Codes())-1])
	h.tbl.Finish(tx)

	g.Open()
	siptest.Eventually(t, "the group drains", func() bool { return x.Stats().Completed == 3 })
	h.noRun()
	require.Zero(t, h.tbl.Stats().Live)

	// With room again the same call parks and resumes.
	tx, c, _ = h.request("MESSAGE")
	require.NoError(t, async.TaskGroupRoute(c, "R", "x"))
	r := h.next()
	require.Same(t, tx, r.tx)
	require.Equal(t, transaction.ReasonTask, r.reason)
}

func TestTaskRouteQueuedPastSuspendTimeout(t *testing.T) {
	// A task park waiting behind a busy worker is still bounded by the
	// suspend timeout; the late task then does nothing.
	h := newHarness(t, opts{suspendTimeout: 5 * time.Second,
		groups: []string{"name=slow;workers=1;nonblock=0"}, queues: map[string]int{"slow": 8}})
	h.route("R", replyOK)
	slow := h.group("slow")
	g := siptest.NewGate(t)
	busy(t, slow, g)

	tx, c, w := h.request("MESSAGE")
	require.NoError(t, async.TaskGroupRoute(c, "R", "slow"))
	require.Equal(t, transaction.Suspended, tx.State())
	require.Zero(t, h.advance(5*time.Second-time.Millisecond))
	require.Equal(t, 1, h.advance(time.Millisecond))
	siptest.Eventually(t, "the task park expires", func() bool { return tx.State() == transaction.Done })
	require.Equal(t, []int{500}, w.Codes())

	g.Open()
	siptest.Eventually(t, "the late task is refused", func() bool { return h.e.Stats().ResumeRefused == 1 })
	h.noRun()
	require.Equal(t, []int{500}, w.Codes())
	require.Equal(t, uint64(1), h.e.Stats().Expired)
}

func TestTaskData(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=abc;workers=2;nonblock=0"}})
	type seen struct {
		data   string
		ok     bool
		raw    any
		tx     *transaction.Tx
		method sip.RequestMethod
		tkvOK  bool
	}
	got := make(chan seen, 4)
	h.route("LOG", func(c *routes.Context) error {
		s, ok := async.DataOf(c)
		_, tkvOK := async.TKVOf(c)
		got <- seen{s, ok, c.Data(), c.Tx(), c.Request().Method, tkvOK}
		return nil
	})

	tx, c, w := h.request("MESSAGE")
	require.NoError(t, async.TaskData(c, "LOG", "caller: alice - callee: bob"))
	h.requireNotParked(tx, c, "TaskData parks nothing")
	r := h.next()
	require.True(t, r.detached)
	require.Equal(t, routes.KindNamed, r.kind)
	require.Equal(t, "LOG", r.name)
	require.NotNil(t, r.req, "a synthetic request")
	require.NotSame(t, tx.Request(), r.req, "the SIP message is not handed over")
	s := <-got
	require.True(t, s.ok)
	require.Equal(t, "caller: alice - callee: bob", s.data)
	require.Nil(t, s.tx, "no transaction in a data task")
	require.False(t, s.tkvOK)
	siptest.Eventually(t, "the default group ran it", func() bool { return completed(h, workergroups.DefaultName) == 1 })
	require.Empty(t, w.Codes(), "the request itself is untouched")

	// Non-string data is there raw; DataOf reports it is not a string.
	require.NoError(t, async.TaskData(c, "LOG", 42))
	h.next()
	s = <-got
	require.False(t, s.ok)
	require.Equal(t, 42, s.raw)

	require.NoError(t, async.TaskGroupData(c, "LOG", "abc", "on abc"))
	h.next()
	s = <-got
	require.Equal(t, "on abc", s.data)
	siptest.Eventually(t, "group abc ran it", func() bool { return completed(h, "abc") == 1 })
	require.Equal(t, uint64(3), h.e.Stats().DataTasks)
	require.Equal(t, transaction.Live, tx.State())
	h.tbl.Finish(tx)
}

func TestTaskDataOverload(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=x;workers=1;nonblock=1"}, queues: map[string]int{"x": 1}})
	h.route("LOG", nop)
	x := h.group("x")
	g := siptest.NewGate(t)
	busy(t, x, g)
	require.NoError(t, x.Submit(g.Wait))
	_, c, _ := h.request("MESSAGE")
	require.ErrorIs(t, async.TaskGroupData(c, "LOG", "x", "d"), workergroups.ErrOverload)
	require.Equal(t, uint64(1), h.e.Stats().DataRejected)
	require.Zero(t, h.e.Stats().DataTasks)
	g.Open()
	h.noRun()
}

func TestTKVEmit(t *testing.T) {
	var mu sync.Mutex
	var order []string
	var emitted []async.TKV
	h := newHarness(t, opts{groups: []string{"name=tkv;workers=1;nonblock=0"}, tkvGroup: "tkv",
		onTKV: func(rec async.TKV) {
			mu.Lock()
			order = append(order, "hook")
			emitted = append(emitted, rec)
			mu.Unlock()
		}})
	got := make(chan async.TKV, 2)
	require.NoError(t, h.routes.Event(async.TKVEventRoute, routes.HandlerFunc(func(c *routes.Context) error {
		rec, ok := async.TKVOf(c)
		if _, dataOK := async.DataOf(c); !ok || dataOK || c.Tx() != nil {
			rec = async.TKV{Key: "TKVOf failed, DataOf claimed a string, or a transaction is there"}
		}
		mu.Lock()
		order = append(order, "route")
		mu.Unlock()
		got <- rec
		return nil
	})))

	tx, c, _ := h.request("MESSAGE")
	want := async.TKV{Type: 8000, Key: "call", Value: "caller='alice';callee='bob'"}
	require.NoError(t, async.TKVEmit(c, want.Type, want.Key, want.Value))
	h.requireNotParked(tx, c, "TKVEmit parks nothing")
	r := h.next()
	require.True(t, r.detached)
	require.Equal(t, routes.KindEvent, r.kind)
	require.Equal(t, async.TKVEventRoute, r.name)
	require.Equal(t, want, <-got)
	siptest.Eventually(t, "OnTKV is called", func() bool { mu.Lock(); defer mu.Unlock(); return len(emitted) == 1 })
	mu.Lock()
	require.Equal(t, []async.TKV{want}, emitted)
	require.Equal(t, []string{"route", "hook"}, order, "the hook gets the record after its event route ran")
	mu.Unlock()
	siptest.Eventually(t, "the tkv group ran it", func() bool { return completed(h, "tkv") == 1 })
	require.Zero(t, completed(h, workergroups.DefaultName))
	require.Equal(t, uint64(1), h.e.Stats().TKV)

	// EmitTKV is the same from outside a route.
	require.NoError(t, h.e.EmitTKV(async.TKV{Type: 1, Key: "k", Value: "v"}))
	require.Equal(t, async.TKV{Type: 1, Key: "k", Value: "v"}, <-got)
	h.next()
	h.tbl.Finish(tx)
}

func TestTKVEmitWithoutEventRoute(t *testing.T) {
	emitted := make(chan async.TKV, 1)
	h := newHarness(t, opts{onTKV: func(rec async.TKV) { emitted <- rec }})
	_, c, _ := h.request("MESSAGE")
	require.NoError(t, async.TKVEmit(c, 1, "key", "val"))
	select {
	case rec := <-emitted:
		require.Equal(t, async.TKV{Type: 1, Key: "key", Value: "val"}, rec)
	case <-time.After(siptest.WaitFor):
		t.Fatal("OnTKV was not called")
	}
	siptest.Eventually(t, "the default group ran it", func() bool { return completed(h, workergroups.DefaultName) == 1 })
	h.noRun()
	require.Equal(t, uint64(1), h.e.Stats().TKV)
}

func TestTKVEmitOverload(t *testing.T) {
	h := newHarness(t, opts{groups: []string{"name=tkv;workers=1;nonblock=1"}, queues: map[string]int{"tkv": 1},
		tkvGroup: "tkv"})
	tkv := h.group("tkv")
	g := siptest.NewGate(t)
	busy(t, tkv, g)
	require.NoError(t, tkv.Submit(g.Wait))
	_, c, _ := h.request("MESSAGE")
	require.ErrorIs(t, async.TKVEmit(c, 1, "k", "v"), workergroups.ErrOverload)
	require.Equal(t, uint64(1), h.e.Stats().TKVRejected)
	require.Zero(t, h.e.Stats().TKV)
}
