package sipproxy

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// regEvents records the location service's OnChange calls.
type regEvents struct {
	mu  sync.Mutex
	log []string // "added sip:alice@10.0.0.1:5060"
	ch  chan string
}

func (r *regEvents) on(ev RegEvent, b Binding) {
	s := ev.String() + " " + addr(b.Contact)
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
	if r.ch != nil {
		r.ch <- s
	}
}

// take returns the events so far and forgets them.
func (r *regEvents) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	if out == nil {
		out = []string{}
	}
	return out
}

// newLoc returns a location service on a mock clock at t0.
func newLoc(o LocationOptions) (*Location, *clock.Mock, *regEvents) {
	mock := clock.NewMock()
	mock.Set(t0)
	ev := &regEvents{}
	o.Clock = mock
	o.OnChange = ev.on
	return NewLocation(o), mock, ev
}

// reg is a REGISTER under construction.
type reg struct {
	to     string // AOR URI
	callID string
	cseq   int
	lines  []string // Contact, Expires, ... header lines
}

func register(callID string, cseq int, lines ...string) reg {
	return reg{to: "sip:alice@example.com", callID: callID, cseq: cseq, lines: lines}
}

// parse builds the request with sipgo's parser from raw text.
func (r reg) parse(t testing.TB) *sip.Request {
	t.Helper()
	var b strings.Builder
	b.WriteString("REGISTER sip:example.com SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-" + fmt.Sprint(r.cseq) + "\r\n")
	b.WriteString("Max-Forwards: 70\r\n")
	b.WriteString("From: <" + r.to + ">;tag=f1\r\n")
	b.WriteString("To: <" + r.to + ">\r\n")
	b.WriteString("Call-ID: " + r.callID + "\r\n")
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", r.cseq)
	for _, l := range r.lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	msg, err := sip.NewParser().ParseSIP([]byte(b.String()))
	require.NoError(t, err, "parse REGISTER")
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("parsed %T, want a request", msg)
	}
	req.SetSource("10.0.0.1:5060")
	return req
}

// save applies r and stops the test on error.
func save(t testing.TB, l *Location, r reg) []Binding {
	t.Helper()
	bs, err := l.Save(r.parse(t))
	require.NoError(t, err, "Save")
	return bs
}

// contacts lists the contacts of bindings as "host:port" (user@ when set).
func contacts(bs []Binding) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, addr(b.Contact))
	}
	return out
}

// addr is "user@host[:port]" of a contact URI.
func addr(u sip.Uri) string {
	s := u.User + "@" + u.Host
	if u.Port > 0 {
		s += ":" + strconv.Itoa(u.Port)
	}
	return s
}

func contact(host string, params ...string) string {
	c := "Contact: <sip:alice@" + host + ">"
	for _, p := range params {
		c += ";" + p
	}
	return c
}

func TestSaveOneContact(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{})
	bs := save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=600")))
	require.Equal(t, 1, len(bs))
	b := bs[0]
	assert.Equal(t, "alice", b.AOR)
	assert.Equal(t, "alice", b.Contact.User)
	assert.Equal(t, "10.0.0.1", b.Contact.Host)
	assert.Equal(t, 5060, b.Contact.Port)
	assert.Equal(t, t0.Add(600*time.Second), b.Expires)
	assert.Equal(t, "c1", b.CallID)
	assert.Equal(t, uint32(1), b.CSeq)
	assert.Equal(t, "10.0.0.1:5060", b.Received)
	assert.Equal(t, []string{"added alice@10.0.0.1:5060"}, ev.take())
	assert.Equal(t, 1, l.Len())
	assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(l.Lookup("alice")))
	assert.Equal(t, 0, len(l.Lookup("bob")))
}

func TestSaveSeveralContacts(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{})
	bs := save(t, l, register("c1", 1,
		contact("10.0.0.1:5060"),
		contact("10.0.0.2:5060"),
		"Contact: <sip:alice@10.0.0.3:5070>;q=0.5, <sip:alice@10.0.0.4>;expires=120",
	))
	assert.Equal(t, []string{"alice@10.0.0.1:5060", "alice@10.0.0.2:5060", "alice@10.0.0.3:5070", "alice@10.0.0.4"},
		contacts(bs), "one binding per contact, comma-separated ones too")
	assert.Equal(t, 4, len(ev.take()))
	assert.Equal(t, 1, l.Len(), "one AOR")
	assert.Equal(t, 4, len(l.Lookup("alice")))
}

func TestSaveQueryOnly(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060")))
	ev.take()
	bs := save(t, l, register("c1", 2))
	assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(bs), "a REGISTER without Contact lists the bindings")
	assert.Equal(t, []string{}, ev.take(), "and changes nothing")
}

func TestExpiresHeaderAndParam(t *testing.T) {
	l, _, _ := newLoc(LocationOptions{DefaultExpires: 1800 * time.Second})
	bs := save(t, l, register("c1", 1,
		"Expires: 300",
		contact("10.0.0.1:5060", "expires=900"),
		contact("10.0.0.2:5060"),
	))
	require.Equal(t, 2, len(bs))
	assert.Equal(t, t0.Add(900*time.Second), bs[0].Expires, "the contact's expires param wins over the header")
	assert.Equal(t, t0.Add(300*time.Second), bs[1].Expires, "the Expires header applies to contacts without a param")

	bob := register("c2", 1, "Contact: <sip:bob@10.0.0.5>")
	bob.to = "sip:bob@example.com"
	bs = save(t, l, bob)
	require.Equal(t, 1, len(bs))
	assert.Equal(t, t0.Add(1800*time.Second), bs[0].Expires, "neither: the default expiry")

	l2, _, _ := newLoc(LocationOptions{})
	bs = save(t, l2, register("c1", 1, contact("10.0.0.1:5060")))
	assert.Equal(t, t0.Add(time.Hour), bs[0].Expires, "the default default is 3600s")

	bs = save(t, l, register("c1", 2, "Expires: 0", contact("10.0.0.1:5060", "expires=600")))
	require.Equal(t, 2, len(bs), "expires=600 overrides Expires: 0")
	assert.Equal(t, t0.Add(600*time.Second), bs[0].Expires)
}

func TestExpiresZeroRemovesOne(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060"), contact("10.0.0.2:5060"), contact("10.0.0.3:5060")))
	ev.take()

	bs := save(t, l, register("c1", 2, contact("10.0.0.2:5060", "expires=0")))
	assert.Equal(t, []string{"alice@10.0.0.1:5060", "alice@10.0.0.3:5060"}, contacts(bs))
	assert.Equal(t, []string{"removed alice@10.0.0.2:5060"}, ev.take())

	bs = save(t, l, register("c1", 3, "Expires: 0", contact("10.0.0.3:5060")))
	assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(bs), "Expires: 0 as a header removes too")
	assert.Equal(t, []string{"removed alice@10.0.0.3:5060"}, ev.take())

	bs = save(t, l, register("c1", 4, contact("10.0.0.9:5060", "expires=0")))
	assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(bs), "removing an unknown contact is no error")
	assert.Equal(t, []string{}, ev.take())

	bs = save(t, l, register("c1", 5, contact("10.0.0.1:5060", "expires=0")))
	assert.Equal(t, 0, len(bs))
	assert.Equal(t, 0, l.Len(), "the last removal drops the AOR")
	assert.Equal(t, 0, len(l.Lookup("alice")))
}

func TestStarRemovesAll(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060"), contact("10.0.0.2:5060")))
	save(t, l, register("other", 7, contact("10.0.0.3:5060")))
	ev.take()

	bs := save(t, l, register("c1", 2, "Contact: *", "Expires: 0"))
	assert.Equal(t, 0, len(bs))
	got := ev.take()
	assert.Equal(t, 3, len(got), "one removal per binding: %v", got)
	for _, e := range got {
		assert.True(t, strings.HasPrefix(e, "removed "), e)
	}
	assert.Equal(t, 0, l.Len())
	assert.Equal(t, 0, len(l.Lookup("alice")))

	bs = save(t, l, register("c1", 3, "Contact: *", "Expires: 0"))
	assert.Equal(t, 0, len(bs), "a * on an empty AOR is fine")
}

func TestStarWithOthers(t *testing.T) {
	cases := map[string][]string{
		"with a contact":       {"Contact: *", contact("10.0.0.9:5060"), "Expires: 0"},
		"non-zero Expires":     {"Contact: *", "Expires: 3600"},
		"no Expires header":    {"Contact: *"},
		"contact before the *": {contact("10.0.0.9:5060", "expires=0"), "Contact: *", "Expires: 0"},
	}
	for name, lines := range cases {
		t.Run(name, func(t *testing.T) {
			l, _, ev := newLoc(LocationOptions{})
			save(t, l, register("c1", 1, contact("10.0.0.1:5060")))
			ev.take()
			_, err := l.Save(register("c1", 2, lines...).parse(t))
			assert.ErrorIs(t, err, ErrStarWithOthers)
			assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(l.Lookup("alice")), "nothing changed")
			assert.Equal(t, []string{}, ev.take())
		})
	}
}

func TestIntervalTooBrief(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{MinExpires: 60 * time.Second})
	assert.Equal(t, 60*time.Second, l.MinExpires())
	for _, lines := range [][]string{
		{contact("10.0.0.1:5060", "expires=30")},
		{"Expires: 59", contact("10.0.0.1:5060")},
		{"Expires: 3600", contact("10.0.0.1:5060", "expires=1")},
	} {
		_, err := l.Save(register("c1", 1, lines...).parse(t))
		assert.ErrorIs(t, err, ErrIntervalTooBrief, "%v", lines)
	}
	assert.Equal(t, 0, l.Len())
	assert.Equal(t, []string{}, ev.take())

	bs := save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=60")))
	assert.Equal(t, t0.Add(60*time.Second), bs[0].Expires, "MinExpires itself is accepted")
	_, err := l.Save(register("c1", 2, contact("10.0.0.1:5060", "expires=0")).parse(t))
	assert.NoError(t, err, "0 is a removal, not too brief")

	l2, _, _ := newLoc(LocationOptions{})
	_, err = l2.Save(register("c1", 1, contact("10.0.0.1:5060", "expires=59")).parse(t))
	assert.ErrorIs(t, err, ErrIntervalTooBrief, "the default MinExpires is 60s")
}

func TestMaxExpiresClamp(t *testing.T) {
	l, _, _ := newLoc(LocationOptions{MaxExpires: time.Hour})
	bs := save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=7200"), "Expires: 86400", contact("10.0.0.2:5060")))
	require.Equal(t, 2, len(bs))
	assert.Equal(t, t0.Add(time.Hour), bs[0].Expires, "a longer param is shortened to MaxExpires")
	assert.Equal(t, t0.Add(time.Hour), bs[1].Expires, "a longer header is shortened to MaxExpires")

	l2, _, _ := newLoc(LocationOptions{DefaultExpires: 2 * time.Hour, MaxExpires: 30 * time.Minute})
	bs = save(t, l2, register("c1", 1, contact("10.0.0.1:5060")))
	assert.Equal(t, t0.Add(30*time.Minute), bs[0].Expires, "the default expiry is clamped too")
}

func TestBadExpires(t *testing.T) {
	l, _, _ := newLoc(LocationOptions{})
	for _, lines := range [][]string{
		{contact("10.0.0.1:5060", "expires=abc")},
		{contact("10.0.0.1:5060", "expires=-1")},
	} {
		_, err := l.Save(register("c1", 1, lines...).parse(t))
		assert.ErrorIs(t, err, ErrBadContact, "%v", lines)
	}
	assert.Equal(t, 0, l.Len())
}

func TestSaveNoAOR(t *testing.T) {
	l, _, _ := newLoc(LocationOptions{})
	r := register("c1", 1, contact("10.0.0.1:5060"))
	r.to = "sip:example.com"
	_, err := l.Save(r.parse(t))
	assert.ErrorIs(t, err, ErrNoAOR)
	assert.Equal(t, 0, l.Len())
}

func TestRefresh(t *testing.T) {
	l, mock, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=600")))
	ev.take()

	mock.Add(100 * time.Second)
	bs := save(t, l, register("c1", 2, contact("10.0.0.1:5060", "expires=600")))
	require.Equal(t, 1, len(bs), "a refresh does not add a binding")
	assert.Equal(t, t0.Add(700*time.Second), bs[0].Expires)
	assert.Equal(t, uint32(2), bs[0].CSeq)
	assert.Equal(t, []string{"refreshed alice@10.0.0.1:5060"}, ev.take())

	mock.Add(100 * time.Second)
	bs = save(t, l, register("new-call-id", 1, contact("10.0.0.1:5060", "expires=600")))
	require.Equal(t, 1, len(bs), "a new Call-ID (a rebooted UA) refreshes regardless of CSeq")
	assert.Equal(t, "new-call-id", bs[0].CallID)
	assert.Equal(t, uint32(1), bs[0].CSeq)
	assert.Equal(t, t0.Add(800*time.Second), bs[0].Expires)
	assert.Equal(t, []string{"refreshed alice@10.0.0.1:5060"}, ev.take())

	bs = save(t, l, register("c1", 3, "Contact: <sip:alice@10.0.0.1:5060;transport=udp>;expires=600"))
	assert.Equal(t, 1, len(bs), "the same user, host and port is the same contact")
}

func TestOutOfOrder(t *testing.T) {
	l, mock, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 5, contact("10.0.0.1:5060", "expires=600")))
	ev.take()
	mock.Add(10 * time.Second)
	for _, cseq := range []int{5, 4, 0} {
		_, err := l.Save(register("c1", cseq, contact("10.0.0.1:5060", "expires=600")).parse(t))
		assert.ErrorIs(t, err, ErrOutOfOrder, "CSeq %d after 5", cseq)
	}
	_, err := l.Save(register("c1", 5, contact("10.0.0.1:5060", "expires=0")).parse(t))
	assert.ErrorIs(t, err, ErrOutOfOrder, "an out-of-order removal is refused too")
	bs := l.Lookup("alice")
	require.Equal(t, 1, len(bs))
	assert.Equal(t, t0.Add(600*time.Second), bs[0].Expires, "the binding is unchanged")
	assert.Equal(t, uint32(5), bs[0].CSeq)
	assert.Equal(t, []string{}, ev.take())
}

func TestMaxContacts(t *testing.T) {
	l, _, ev := newLoc(LocationOptions{MaxContacts: 2})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060"), contact("10.0.0.2:5060")))
	ev.take()
	_, err := l.Save(register("c1", 2, contact("10.0.0.3:5060")).parse(t))
	assert.ErrorIs(t, err, ErrTooManyContacts)
	assert.Equal(t, []string{"alice@10.0.0.1:5060", "alice@10.0.0.2:5060"}, contacts(sortedByHost(l.Lookup("alice"))))
	assert.Equal(t, []string{}, ev.take())

	_, err = l.Save(register("c1", 3, contact("10.0.0.1:5060")).parse(t))
	assert.NoError(t, err, "a refresh at the limit is fine")
	_, err = l.Save(register("c1", 4, contact("10.0.0.1:5060", "expires=0"), contact("10.0.0.3:5060")).parse(t))
	assert.NoError(t, err, "a removal makes room in the same REGISTER")
	assert.Equal(t, []string{"alice@10.0.0.2:5060", "alice@10.0.0.3:5060"}, contacts(sortedByHost(l.Lookup("alice"))))

	l2, _, _ := newLoc(LocationOptions{})
	var lines []string
	for i := range 11 {
		lines = append(lines, contact(fmt.Sprintf("10.0.1.%d:5060", i)))
	}
	_, err = l2.Save(register("c1", 1, lines...).parse(t))
	assert.ErrorIs(t, err, ErrTooManyContacts, "the default limit is 10")
}

// sortedByHost orders bindings by contact host, to compare sets.
func sortedByHost(bs []Binding) []Binding {
	out := append([]Binding(nil), bs...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Contact.Host < out[j-1].Contact.Host; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestSweepExpires(t *testing.T) {
	l, mock, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=60"), contact("10.0.0.2:5060", "expires=120")))
	r := register("c2", 1, contact("10.0.0.3:5060", "expires=60"))
	r.to = "sip:bob@example.com"
	save(t, l, r)
	ev.take()

	assert.Equal(t, 0, l.Sweep(), "nothing is due yet")
	mock.Add(59 * time.Second)
	assert.Equal(t, 0, l.Sweep())
	mock.Add(time.Second)
	assert.Equal(t, 2, l.Sweep(), "due at exactly Expires")
	got := ev.take()
	assert.Equal(t, 2, len(got))
	for _, e := range got {
		assert.True(t, strings.HasPrefix(e, "expired "), e)
	}
	assert.Equal(t, 1, l.Len(), "bob's AOR is gone")
	assert.Equal(t, []string{"alice@10.0.0.2:5060"}, contacts(l.Lookup("alice")))

	mock.Add(time.Hour)
	assert.Equal(t, 1, l.Sweep())
	assert.Equal(t, []string{"expired alice@10.0.0.2:5060"}, ev.take())
	assert.Equal(t, 0, l.Len())
	assert.Equal(t, 0, l.Sweep())
	assert.Equal(t, []string{}, ev.take())
}

func TestLookupNeverReturnsExpired(t *testing.T) {
	l, mock, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=60"), contact("10.0.0.2:5060", "expires=600")))
	ev.take()
	mock.Add(60 * time.Second)
	assert.Equal(t, []string{"alice@10.0.0.2:5060"}, contacts(l.Lookup("alice")), "no Sweep needed")
	assert.Equal(t, []string{"expired alice@10.0.0.1:5060"}, ev.take(), "Lookup reports what it drops")
	assert.Equal(t, 0, l.Sweep(), "and it is not reported twice")
	mock.Add(time.Hour)
	assert.Equal(t, 0, len(l.Lookup("alice")))
	assert.Equal(t, 0, l.Len())

	// Save drops expired bindings of the AOR too, and a re-register of an
	// expired contact is an addition.
	save(t, l, register("c1", 2, contact("10.0.0.1:5060", "expires=60")))
	ev.take()
	mock.Add(2 * time.Minute)
	bs := save(t, l, register("c1", 3, contact("10.0.0.1:5060", "expires=60")))
	assert.Equal(t, 1, len(bs))
	assert.Equal(t, []string{"expired alice@10.0.0.1:5060", "added alice@10.0.0.1:5060"}, ev.take())
}

func TestLookupOrder(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{})
	save(t, l, register("c1", 1,
		contact("10.0.0.1:5060", "q=0.5"),
		contact("10.0.0.2:5060", "q=1.0"),
		contact("10.0.0.3:5060", "q=0.8"),
	))
	mock.Add(10 * time.Second)
	save(t, l, register("c2", 1, contact("10.0.0.4:5060", "q=0.8")))
	assert.Equal(t, []string{"alice@10.0.0.2:5060", "alice@10.0.0.4:5060", "alice@10.0.0.3:5060", "alice@10.0.0.1:5060"},
		contacts(l.Lookup("alice")), "highest q first; equal q: the fresher first")

	mock.Add(10 * time.Second)
	save(t, l, register("c1", 2, contact("10.0.0.3:5060", "q=0.8")))
	assert.Equal(t, []string{"alice@10.0.0.2:5060", "alice@10.0.0.3:5060", "alice@10.0.0.4:5060", "alice@10.0.0.1:5060"},
		contacts(l.Lookup("alice")), "a refresh makes a binding the fresher")
}

func TestLookupOrderFreshnessNotExpiry(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=3600")))
	mock.Add(10 * time.Second)
	save(t, l, register("c2", 1, contact("10.0.0.2:5060", "expires=300")))
	assert.Equal(t, []string{"alice@10.0.0.2:5060", "alice@10.0.0.1:5060"}, contacts(l.Lookup("alice")),
		"the most recently refreshed first")
}

func TestLookupOrderNumericQ(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "q=1.0")))
	mock.Add(10 * time.Second)
	save(t, l, register("c2", 1, contact("10.0.0.2:5060", "q=1")))
	assert.Equal(t, []string{"alice@10.0.0.2:5060", "alice@10.0.0.1:5060"}, contacts(l.Lookup("alice")),
		"equal q: the fresher first")
}

func TestRefreshUpdatesQ(t *testing.T) {
	l, _, _ := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "q=0.1")))
	bs := save(t, l, register("c1", 2, contact("10.0.0.1:5060", "q=0.9")))
	require.Equal(t, 1, len(bs))
	assert.Equal(t, "0.9", bs[0].Q)
}

func TestRefreshUpdatesContactAndTimes(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{})
	bs := save(t, l, register("c1", 1, "Contact: <sip:alice@10.0.0.1:5060;transport=udp>;q=0.5"))
	require.Equal(t, 1, len(bs))
	assert.Equal(t, t0, bs[0].Updated, "Updated is set when the binding is added")
	assert.Equal(t, 0.5, bs[0].QValue)
	mock.Add(time.Minute)
	bs = save(t, l, register("c1", 2, "Contact: <sip:alice@10.0.0.1:5060;transport=tcp>"))
	require.Equal(t, 1, len(bs))
	assert.Equal(t, "tcp", bs[0].Contact.UriParams.GetOr("transport", ""), "the refresh's Contact URI replaces the old one")
	assert.Equal(t, "", bs[0].Q, "a refresh without q drops the old one")
	assert.Equal(t, 1.0, bs[0].QValue)
	assert.Equal(t, t0.Add(time.Minute), bs[0].Updated, "and Updated follows the refresh")
}

func TestQValues(t *testing.T) {
	for q, want := range map[string]float64{"0": 0, "1": 1, "0.5": 0.5, "0.123": 0.123, "1.0": 1, "1.000": 1, "0.": 0, "0.1234": 0.1234} {
		got, err := parseQ(q)
		assert.NoError(t, err, "parseQ(%q)", q)
		assert.Equal(t, want, got, "parseQ(%q)", q)
	}
	for _, q := range []string{"", "2", "1.5", "1.001", "-0.5", ".5", "0.5e1", "1e0", "NaN", "inf", "0x1p-1", "0.5x", "00.5", " 0.5", "0,5"} {
		_, err := parseQ(q)
		assert.True(t, err != nil, "parseQ(%q) must fail", q)
	}

	l, _, ev := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060", "q=0.5")))
	ev.take()
	_, err := l.Save(register("c1", 2, contact("10.0.0.1:5060", "q=0.7"), contact("10.0.0.2:5060", "q=high")).parse(t))
	assert.ErrorIs(t, err, ErrBadContact, "a malformed q is a bad contact")
	bs := l.Lookup("alice")
	require.Equal(t, 1, len(bs))
	assert.Equal(t, "0.5", bs[0].Q, "and the REGISTER changes nothing")
	assert.Equal(t, []string{}, ev.take())
}

func TestLookupOrderNoQ(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{})
	save(t, l, register("c1", 1, contact("10.0.0.1:5060")))
	mock.Add(10 * time.Second)
	save(t, l, register("c2", 1, contact("10.0.0.2:5060", "q=0.9")))
	mock.Add(10 * time.Second)
	save(t, l, register("c3", 1, contact("10.0.0.3:5060", "q=1")))
	assert.Equal(t, []string{"alice@10.0.0.3:5060", "alice@10.0.0.1:5060", "alice@10.0.0.2:5060"}, contacts(l.Lookup("alice")),
		"a contact without q counts as q=1.0")
}

func TestSaveErrorChangesNothing(t *testing.T) {
	t.Run("removal then too brief", func(t *testing.T) {
		l, _, _ := newLoc(LocationOptions{})
		save(t, l, register("c1", 1, contact("10.0.0.1:5060"), contact("10.0.0.2:5060")))
		_, err := l.Save(register("c1", 2, contact("10.0.0.1:5060", "expires=0"),
			contact("10.0.0.3:5060", "expires=10")).parse(t))
		assert.ErrorIs(t, err, ErrIntervalTooBrief)
		assert.Equal(t, []string{"alice@10.0.0.1:5060", "alice@10.0.0.2:5060"}, contacts(sortedByHost(l.Lookup("alice"))),
			"a refused REGISTER leaves the bindings as they were")
	})
	t.Run("refresh then too many", func(t *testing.T) {
		l, mock, _ := newLoc(LocationOptions{MaxContacts: 1})
		save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=600")))
		mock.Add(time.Minute)
		_, err := l.Save(register("c1", 2, contact("10.0.0.1:5060", "expires=600"), contact("10.0.0.2:5060")).parse(t))
		assert.ErrorIs(t, err, ErrTooManyContacts)
		bs := l.Lookup("alice")
		require.Equal(t, 1, len(bs))
		assert.Equal(t, t0.Add(600*time.Second), bs[0].Expires, "a refused REGISTER refreshes nothing")
		assert.Equal(t, uint32(1), bs[0].CSeq)
	})
	t.Run("expired dropped then error", func(t *testing.T) {
		l, mock, ev := newLoc(LocationOptions{})
		save(t, l, register("c1", 1, contact("10.0.0.1:5060", "expires=60"), contact("10.0.0.2:5060", "expires=600")))
		ev.take()
		mock.Add(2 * time.Minute)
		_, err := l.Save(register("c1", 2, contact("10.0.0.3:5060", "expires=10")).parse(t))
		assert.ErrorIs(t, err, ErrIntervalTooBrief)
		assert.Equal(t, []string{"alice@10.0.0.2:5060"}, contacts(l.Lookup("alice")), "no duplicated binding")
		assert.Equal(t, []string{"expired alice@10.0.0.1:5060"}, ev.take(), "the expiry is reported once")
	})
}

func TestUseDomain(t *testing.T) {
	withDomain, _, _ := newLoc(LocationOptions{UseDomain: true})
	userOnly, _, _ := newLoc(LocationOptions{})
	a := register("c1", 1, contact("10.0.0.1:5060"))
	b := register("c2", 1, contact("10.0.0.2:5060"))
	b.to = "sip:alice@other.example.org"
	for _, r := range []reg{a, b} {
		save(t, withDomain, r)
		save(t, userOnly, r)
	}

	u := sip.Uri{User: "alice", Host: "example.com"}
	assert.Equal(t, "alice@example.com", withDomain.Key(u))
	assert.Equal(t, "alice", userOnly.Key(u))

	assert.Equal(t, 2, withDomain.Len(), "one AOR per domain")
	assert.Equal(t, []string{"alice@10.0.0.1:5060"}, contacts(withDomain.Lookup("alice@example.com")))
	assert.Equal(t, []string{"alice@10.0.0.2:5060"}, contacts(withDomain.Lookup("alice@other.example.org")))
	assert.Equal(t, 0, len(withDomain.Lookup("alice")))
	bs := withDomain.Lookup("alice@example.com")
	assert.Equal(t, "alice@example.com", bs[0].AOR)

	assert.Equal(t, 1, userOnly.Len(), "without UseDomain the user is the key")
	assert.Equal(t, 2, len(userOnly.Lookup("alice")))
}

func TestRunSweeps(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(t0)
	ev := &regEvents{ch: make(chan string, 4)}
	l := NewLocation(LocationOptions{Clock: mock, OnChange: ev.on})
	_, err := l.Save(register("c1", 1, contact("10.0.0.1:5060", "expires=60")).parse(t))
	require.NoError(t, err)
	<-ev.ch // added

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		l.Run(done, time.Second)
	}()
	// Move past the expiry one tick at a time until Run's sweep reports it.
	var got string
	for i := 0; got == "" && i < 120; i++ {
		mock.Add(time.Second)
		select {
		case got = <-ev.ch:
		default:
		}
	}
	if got == "" {
		select {
		case got = <-ev.ch:
		case <-time.After(5 * time.Second):
		}
	}
	assert.Equal(t, "expired alice@10.0.0.1:5060", got, "Run sweeps on its ticker")
	assert.Equal(t, 0, l.Len())
	close(done)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after done was closed")
	}
}

func TestRegEventString(t *testing.T) {
	assert.Equal(t, "added", RegAdded.String())
	assert.Equal(t, "refreshed", RegRefreshed.String())
	assert.Equal(t, "removed", RegRemoved.String())
	assert.Equal(t, "expired", RegExpired.String())
}

func TestLocationConcurrent(t *testing.T) {
	l, mock, _ := newLoc(LocationOptions{MaxContacts: 100})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				r := register(fmt.Sprintf("c%d", g), i+1, contact(fmt.Sprintf("10.0.%d.%d:5060", g, i%5), "expires=60"))
				if _, err := l.Save(r.parse(t)); err != nil {
					t.Errorf("Save: %v", err)
					return
				}
				_ = l.Lookup("alice")
				_ = l.Sweep()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 40, len(l.Lookup("alice")), "8 clients × 5 contacts")
	mock.Add(time.Minute)
	assert.Equal(t, 40, l.Sweep())
	assert.Equal(t, 0, l.Len())
}
