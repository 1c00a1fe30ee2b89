package evi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Synchronous is implemented by a Transport that delivers on the raising
// goroutine, as OpenSIPS's sync_mode=1: when Synchronous returns true (it is
// asked once, when subscribing), RaiseEvent calls the transport's Send itself,
// with a context bounded by the send timeout (WithSendTimeout), waits for it
// and returns its error. Such a transport's Send must be safe for concurrent
// use: every raiser calls it. Its bus subscription still exists (for Stats,
// WithExpire, Unsubscribe and Close) but never sends.
type Synchronous interface {
	Synchronous() bool
}

// syncSubs holds the synchronous subscribers of each event. RaiseEvent reads
// it without a lock; writers copy on write under the lock.
type syncSubs struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string][]*Subscriber]
}

func isSynchronous(tr Transport) bool {
	s, ok := tr.(Synchronous)
	return ok && s.Synchronous()
}

// addSync records a synchronous subscriber; called with e.mu held.
func (e *Events) addSync(s *Subscriber) {
	if !s.sync {
		return
	}
	e.syncs.mu.Lock()
	defer e.syncs.mu.Unlock()
	next := make(map[string][]*Subscriber)
	if cur := e.syncs.m.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[s.event] = append(slices.Clone(next[s.event]), s)
	e.syncs.m.Store(&next)
}

// removeSync forgets a synchronous subscriber; called with e.mu held.
func (e *Events) removeSync(s *Subscriber) {
	if !s.sync {
		return
	}
	e.syncs.mu.Lock()
	defer e.syncs.mu.Unlock()
	cur := e.syncs.m.Load()
	if cur == nil {
		return
	}
	next := make(map[string][]*Subscriber, len(*cur))
	for k, v := range *cur {
		if k == s.event {
			v = slices.DeleteFunc(slices.Clone(v), func(x *Subscriber) bool { return x == s })
			if len(v) == 0 {
				continue
			}
		}
		next[k] = v
	}
	e.syncs.m.Store(&next)
}

// sendSync sends ev to the synchronous subscribers of its event, one after
// the other, all within one send timeout, and returns their errors joined.
func (e *Events) sendSync(ev *Event) error {
	cur := e.syncs.m.Load()
	if cur == nil {
		return nil
	}
	subs := (*cur)[ev.name]
	if len(subs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.sendTimeout)
	defer cancel()
	var errs []error
	for _, s := range subs {
		if err := s.tr.Send(ctx, ev); err != nil {
			s.failed.Add(1)
			errs = append(errs, fmt.Errorf("evi: raise %s: %s: %w", ev.name, s.socket, err))
			continue
		}
		s.sent.Add(1)
	}
	return errors.Join(errs...)
}
