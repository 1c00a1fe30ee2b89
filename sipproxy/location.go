package sipproxy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/observe"
)

// Registrar errors; each maps to a SIP status in Save's caller.
var (
	ErrNoAOR            = errors.New("location: no address of record in To")
	ErrBadContact       = errors.New("location: bad Contact")
	ErrStarWithOthers   = errors.New("location: Contact * must be alone with Expires: 0")
	ErrIntervalTooBrief = errors.New("location: interval too brief")
	ErrOutOfOrder       = errors.New("location: CSeq out of order")
	ErrTooManyContacts  = errors.New("location: too many contacts")
)

// Binding is one registered contact of an address of record.
type Binding struct {
	AOR      string
	Contact  sip.Uri
	Expires  time.Time
	CallID   string
	CSeq     uint32
	Received string // source address of the REGISTER
	// Q is the Contact's q parameter as the client sent it, "" when absent.
	Q string
	// QValue is Q as a number in [0, 1]; a contact without q counts as 1.0,
	// the top preference. Lookup orders by it.
	QValue float64
	// Updated is when the binding was added or last refreshed.
	Updated time.Time
}

// RegEvent tells what happened to a binding.
type RegEvent = observe.RegEvent

// Registration events.
const (
	RegAdded     = observe.RegAdded
	RegRefreshed = observe.RegRefreshed
	RegRemoved   = observe.RegRemoved
	RegExpired   = observe.RegExpired
)

// LocationOptions configure the location service.
type LocationOptions struct {
	Clock          clock.Clock
	DefaultExpires time.Duration // when the REGISTER names none: 3600s
	MinExpires     time.Duration // below it (and not 0): 423; default 60s
	MaxExpires     time.Duration // longer requests are shortened; default 3600s
	MaxContacts    int           // per AOR; default 10
	UseDomain      bool          // key by user@host rather than user
	// OnChange, if set, is the first observer of Changes.
	OnChange func(ev RegEvent, b Binding)
}

// RegChange is a binding's change, as Location.Changes reports it.
type RegChange struct {
	Event   RegEvent
	Binding Binding
}

// Location is the in-memory location service (usrloc). Bindings expire on
// their own: Sweep removes what is due, and Run calls Sweep every second.
type Location struct {
	opts  LocationOptions
	clock clock.Clock

	mu sync.Mutex
	m  map[string][]*Binding

	changes observe.List[RegChange]
}

// NewLocation returns an empty location service.
func NewLocation(o LocationOptions) *Location {
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.DefaultExpires <= 0 {
		o.DefaultExpires = time.Hour
	}
	if o.MinExpires <= 0 {
		o.MinExpires = 60 * time.Second
	}
	if o.MaxExpires <= 0 {
		o.MaxExpires = time.Hour
	}
	if o.MaxContacts <= 0 {
		o.MaxContacts = 10
	}
	l := &Location{opts: o, clock: o.Clock, m: make(map[string][]*Binding)}
	if f := o.OnChange; f != nil {
		l.changes.Add(func(c RegChange) { f(c.Event, c.Binding) })
	}
	return l
}

// MinExpires returns the smallest accepted non-zero expiry.
func (l *Location) MinExpires() time.Duration { return l.opts.MinExpires }

// Key returns the location key for a URI.
func (l *Location) Key(u sip.Uri) string {
	if l.opts.UseDomain {
		return u.User + "@" + u.Host
	}
	return u.User
}

type change struct {
	ev RegEvent
	b  Binding
}

// Save applies a REGISTER and returns the AOR's bindings afterwards. It is
// all or nothing: when a contact is refused, the stored bindings are left as
// they were and no event is reported.
func (l *Location) Save(req *sip.Request) ([]Binding, error) {
	to := req.To()
	if to == nil || to.Address.User == "" {
		return nil, ErrNoAOR
	}
	aor := l.Key(to.Address)
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	var cseq uint32
	if h := req.CSeq(); h != nil {
		cseq = h.SeqNo
	}
	defExp := l.opts.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: Expires %q", ErrBadContact, h.Value())
		}
		defExp = time.Duration(n) * time.Second
	}

	contacts := req.GetHeaders("Contact")
	now := l.clock.Now()
	l.mu.Lock()
	cur, changes, err := l.applyLocked(aor, l.m[aor], contacts, defExp, callID, cseq, req.Source(), now)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	l.storeLocked(aor, cur)
	out := snapshot(cur)
	l.mu.Unlock()
	l.emit(changes)
	return out, nil
}

// applyLocked works out the bindings of aor after a REGISTER's contacts and
// the changes to report. It never modifies stored, nor the bindings it points
// to: what it returns is a new slice, refreshed bindings are new copies.
func (l *Location) applyLocked(aor string, stored []*Binding, contacts []sip.Header, defExp time.Duration,
	callID string, cseq uint32, source string, now time.Time) ([]*Binding, []change, error) {
	var changes []change
	cur := slices.Clone(liveBindings(stored, now, &changes))
	for _, hdr := range contacts {
		ch, ok := hdr.(*sip.ContactHeader)
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrBadContact, hdr.Value())
		}
		if ch.Address.Wildcard {
			if len(contacts) != 1 || defExp != 0 {
				return nil, nil, ErrStarWithOthers
			}
			for _, b := range cur {
				changes = append(changes, change{RegRemoved, *b})
			}
			cur = nil
			continue
		}
		exp := defExp
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, nil, fmt.Errorf("%w: expires=%q", ErrBadContact, v)
			}
			exp = time.Duration(n) * time.Second
		}
		if exp > 0 && exp < l.opts.MinExpires {
			return nil, nil, fmt.Errorf("%w: %s < %s", ErrIntervalTooBrief, exp, l.opts.MinExpires)
		}
		if exp > l.opts.MaxExpires {
			exp = l.opts.MaxExpires
		}
		q, hasQ := ch.Params.Get("q")
		qv := 1.0
		if hasQ {
			var err error
			if qv, err = parseQ(q); err != nil {
				return nil, nil, fmt.Errorf("%w: q=%q", ErrBadContact, q)
			}
		}
		idx := -1
		for i, b := range cur {
			if sameContact(b.Contact, ch.Address) {
				idx = i
				break
			}
		}
		if idx >= 0 && cur[idx].CallID == callID && cseq <= cur[idx].CSeq {
			return nil, nil, fmt.Errorf("%w: %d <= %d", ErrOutOfOrder, cseq, cur[idx].CSeq)
		}
		switch {
		case exp == 0 && idx >= 0:
			changes = append(changes, change{RegRemoved, *cur[idx]})
			cur = slices.Delete(cur, idx, idx+1)
		case exp == 0:
		case idx >= 0:
			b := *cur[idx] // a copy: the stored binding stays as it was until success
			b.Contact = *ch.Address.Clone()
			b.Expires, b.CallID, b.CSeq, b.Received = now.Add(exp), callID, cseq, source
			b.Q, b.QValue, b.Updated = q, qv, now
			cur[idx] = &b
			changes = append(changes, change{RegRefreshed, b})
		default:
			if len(cur) >= l.opts.MaxContacts {
				return nil, nil, fmt.Errorf("%w: %d for %s", ErrTooManyContacts, l.opts.MaxContacts, aor)
			}
			b := &Binding{AOR: aor, Contact: *ch.Address.Clone(), Expires: now.Add(exp),
				CallID: callID, CSeq: cseq, Received: source, Q: q, QValue: qv, Updated: now}
			cur = append(cur, b)
			changes = append(changes, change{RegAdded, *b})
		}
	}
	return cur, changes, nil
}

// parseQ reads a q value: RFC 3261's qvalue, a number from 0 to 1 written
// "0", "1" or with a decimal point ("0.5", "1.000"). More than three decimals
// are tolerated; anything else (signs, exponents, ".5", "NaN") is refused.
func parseQ(s string) (float64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole != "0" && whole != "1" {
		return 0, fmt.Errorf("bad q %q", s)
	}
	if hasDot {
		for _, c := range []byte(frac) {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("bad q %q", s)
			}
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v > 1 {
		return 0, fmt.Errorf("bad q %q", s)
	}
	return v, nil
}

func sameContact(a, b sip.Uri) bool {
	return a.User == b.User && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

func snapshot(bs []*Binding) []Binding {
	out := make([]Binding, len(bs))
	for i, b := range bs {
		out[i] = *b
	}
	return out
}

// liveBindings returns the bindings of bs that have not expired at now and
// adds an expiry change for each of the others. It never writes to bs: when
// some have expired, the live ones are in a new slice; when none has, it
// returns bs itself.
func liveBindings(bs []*Binding, now time.Time, changes *[]change) []*Binding {
	var kept []*Binding
	for i, b := range bs {
		if now.Before(b.Expires) {
			if kept != nil {
				kept = append(kept, b)
			}
			continue
		}
		if kept == nil {
			kept = make([]*Binding, i, len(bs))
			copy(kept, bs[:i])
		}
		*changes = append(*changes, change{RegExpired, *b})
	}
	if kept == nil {
		return bs
	}
	return kept
}

// storeLocked makes bs the bindings of aor; none removes the AOR.
func (l *Location) storeLocked(aor string, bs []*Binding) {
	if len(bs) == 0 {
		delete(l.m, aor)
		return
	}
	l.m[aor] = bs
}

// sweepLocked drops the expired bindings of aor, if any.
func (l *Location) sweepLocked(aor string, now time.Time, changes *[]change) []*Binding {
	bs := l.m[aor]
	n := len(*changes)
	live := liveBindings(bs, now, changes)
	if len(*changes) > n {
		l.storeLocked(aor, live)
	}
	return live
}

func (l *Location) emit(cs []change) {
	for _, c := range cs {
		l.changes.Notify(RegChange{Event: c.ev, Binding: c.b})
	}
}

// Changes is the list of observers of every binding change (events,
// device state, a program's own). They run without the location's locks
// held; keep them short. Join before the first REGISTER.
func (l *Location) Changes() *observe.List[RegChange] { return &l.changes }

// Lookup returns the live bindings of a key, highest q first (a contact
// registered without q counts as 1.0), then the most recently added or
// refreshed.
func (l *Location) Lookup(key string) []Binding {
	now := l.clock.Now()
	var changes []change
	l.mu.Lock()
	out := snapshot(l.sweepLocked(key, now, &changes))
	l.mu.Unlock()
	l.emit(changes)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].QValue != out[j].QValue {
			return out[i].QValue > out[j].QValue
		}
		return out[i].Updated.After(out[j].Updated)
	})
	return out
}

// Sweep removes expired bindings and reports them; it returns how many.
func (l *Location) Sweep() int {
	now := l.clock.Now()
	var changes []change
	l.mu.Lock()
	for aor := range l.m {
		l.sweepLocked(aor, now, &changes)
	}
	l.mu.Unlock()
	l.emit(changes)
	return len(changes)
}

// Len returns the number of AORs with bindings.
func (l *Location) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// Run sweeps every interval until done is closed.
func (l *Location) Run(done <-chan struct{}, interval time.Duration) {
	every(l.clock, interval, done, func() { l.Sweep() })
}

// every calls f every d on clk until done closes.
func every(clk clock.Clock, d time.Duration, done <-chan struct{}, f func()) {
	t := clk.Ticker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			f()
		}
	}
}
