package sipauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"sync"
	"time"
)

// Nonces are stateless: base64url of the issue time (8 bytes, Unix ns), 8
// random bytes and the first 16 bytes of an HMAC-SHA-256 over the realm and
// those 16 bytes, under a key drawn at start-up. Checking one needs no
// state; only the nonce counts of nonces that authenticated a request are
// kept (ncTracker), bounded.
const (
	nonceRaw = 8 + 8 + 16
	nonceLen = (nonceRaw*8 + 5) / 6 // base64 without padding
)

type nonceState int

const (
	nonceOK      nonceState = iota
	nonceInvalid            // not ours (forged, corrupted, another process's)
	nonceStale              // ours, but past its expiry
)

type nonces struct {
	key    []byte
	realm  string
	expiry time.Duration
}

func newNonces(key []byte, realm string, expiry time.Duration) *nonces {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return &nonces{key: key, realm: realm, expiry: expiry}
}

func (n *nonces) mac(b []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte(n.realm))
	m.Write([]byte{0})
	m.Write(b[:16])
	return m.Sum(nil)[:16]
}

// issue returns a fresh nonce for now.
func (n *nonces) issue(now time.Time) string {
	var b [nonceRaw]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(b[8:16])
	copy(b[16:], n.mac(b[:]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// check reports whether nonce is ours and fresh at now, and when it was
// issued.
func (n *nonces) check(nonce string, now time.Time) (nonceState, time.Time) {
	if len(nonce) != nonceLen {
		return nonceInvalid, time.Time{}
	}
	var b [nonceRaw]byte
	if k, err := base64.RawURLEncoding.Decode(b[:], []byte(nonce)); err != nil || k != nonceRaw {
		return nonceInvalid, time.Time{}
	}
	if !hmac.Equal(b[16:], n.mac(b[:])) {
		return nonceInvalid, time.Time{}
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))
	if now.Sub(issued) > n.expiry {
		return nonceStale, issued
	}
	return nonceOK, issued
}

// ncTracker keeps, for each nonce that authenticated a request, the highest
// nonce count seen, so that a request replayed with a count already used is
// refused. It holds at most max nonces: entries leave first in, first out,
// at their expiry or when the tracker is full. A nonce evicted while still
// fresh must not start over at count 1, so floor remembers the latest issue
// time evicted: an unknown nonce issued at or before it is treated as stale
// (the client gets a new one without re-prompting the user).
type ncTracker struct {
	mu     sync.Mutex
	max    int
	expiry time.Duration
	seen   map[string]*ncEntry
	queue  []*ncEntry // by first use; head first
	head   int
	floor  time.Time
}

type ncEntry struct {
	nonce  string
	issued time.Time
	nc     uint32
}

func newNCTracker(max int, expiry time.Duration) *ncTracker {
	return &ncTracker{max: max, expiry: expiry, seen: map[string]*ncEntry{}}
}

type ncResult int

const (
	ncOK     ncResult = iota
	ncReplay          // count not above the highest seen for the nonce
	ncLost            // nonce evicted early: its counts are unknown
)

// use records nonce count nc for nonce (issued at issued) at now.
func (t *ncTracker) use(nonce string, issued time.Time, nc uint32, now time.Time) ncResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if e, ok := t.seen[nonce]; ok {
		if nc <= e.nc {
			return ncReplay
		}
		e.nc = nc
		return ncOK
	}
	if !t.floor.IsZero() && !issued.After(t.floor) {
		return ncLost
	}
	for len(t.seen) >= t.max {
		e := t.pop()
		if e.issued.After(t.floor) {
			t.floor = e.issued
		}
	}
	e := &ncEntry{nonce: nonce, issued: issued, nc: nc}
	t.seen[nonce] = e
	t.queue = append(t.queue, e)
	return ncOK
}

// expire drops the entries at the head whose nonce has expired.
func (t *ncTracker) expire(now time.Time) {
	for t.head < len(t.queue) && now.Sub(t.queue[t.head].issued) > t.expiry {
		t.pop()
	}
}

func (t *ncTracker) pop() *ncEntry {
	e := t.queue[t.head]
	t.queue[t.head] = nil
	t.head++
	delete(t.seen, e.nonce)
	if t.head > 1024 && t.head*2 > len(t.queue) {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
	return e
}

func (t *ncTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}
