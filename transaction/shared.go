package transaction

import (
	"sort"
	"sync"
)

// Shared is a set of named process-wide tables, the $shv / htable analog:
// values that any route, worker or resumed transaction may read and write.
type Shared struct {
	tables sync.Map // name -> *SharedTable
}

// Table returns the named table, creating it on first use.
func (s *Shared) Table(name string) *SharedTable {
	if t, ok := s.tables.Load(name); ok {
		return t.(*SharedTable)
	}
	t, _ := s.tables.LoadOrStore(name, &SharedTable{m: make(map[string]any)})
	return t.(*SharedTable)
}

// Names lists the tables, sorted.
func (s *Shared) Names() []string {
	var out []string
	s.tables.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	sort.Strings(out)
	return out
}

// SharedTable is a concurrent key/value table.
type SharedTable struct {
	mu sync.RWMutex
	m  map[string]any
}

// Get returns the value of key.
func (t *SharedTable) Get(key string) (any, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.m[key]
	return v, ok
}

// Set stores a value.
func (t *SharedTable) Set(key string, v any) {
	t.mu.Lock()
	t.m[key] = v
	t.mu.Unlock()
}

// Delete removes a key.
func (t *SharedTable) Delete(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// Add adds delta to the integer at key (0 when absent or not an int64) and
// returns the new value, atomically with respect to other table operations.
func (t *SharedTable) Add(key string, delta int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, _ := t.m[key].(int64)
	n += delta
	t.m[key] = n
	return n
}

// Update runs f on the current value under the table's lock and stores what
// it returns; use it for read-modify-write of structured values.
func (t *SharedTable) Update(key string, f func(old any, ok bool) any) any {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.m[key]
	v := f(old, ok)
	t.m[key] = v
	return v
}

// Len returns the number of keys.
func (t *SharedTable) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
