package transaction

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSharedTables(t *testing.T) {
	var s Shared
	assert.Equal(t, 0, len(s.Names()))
	a := s.Table("calls")
	assert.True(t, s.Table("calls") == a, "the same name returns the same table")
	b := s.Table("limits")
	assert.True(t, a != b)
	s.Table("acl")
	assert.Equal(t, []string{"acl", "calls", "limits"}, s.Names(), "names sorted")

	a.Set("x", 1)
	_, ok := b.Get("x")
	assert.True(t, !ok, "tables do not share keys")
}

func TestSharedTableGetSetDelete(t *testing.T) {
	var s Shared
	tb := s.Table("t")
	_, ok := tb.Get("k")
	assert.True(t, !ok)
	assert.Equal(t, 0, tb.Len())
	tb.Set("k", "v1")
	v, ok := tb.Get("k")
	assert.True(t, ok)
	assert.Equal(t, "v1", v)
	tb.Set("k", "v2")
	v, _ = tb.Get("k")
	assert.Equal(t, "v2", v, "Set overwrites")
	tb.Set("nil", nil)
	v, ok = tb.Get("nil")
	assert.True(t, ok && v == nil, "a nil value is stored")
	assert.Equal(t, 2, tb.Len())
	tb.Delete("k")
	tb.Delete("absent")
	_, ok = tb.Get("k")
	assert.True(t, !ok)
	assert.Equal(t, 1, tb.Len())
}

func TestSharedTableAdd(t *testing.T) {
	var s Shared
	tb := s.Table("counters")
	assert.Equal(t, int64(5), tb.Add("n", 5), "absent counts as 0")
	assert.Equal(t, int64(3), tb.Add("n", -2))
	v, _ := tb.Get("n")
	assert.Equal(t, int64(3), v, "Add stores an int64")
	tb.Set("s", "not a number")
	assert.Equal(t, int64(1), tb.Add("s", 1), "a non-int64 value counts as 0")
	tb.Set("i", 10) // an int, not an int64
	assert.Equal(t, int64(1), tb.Add("i", 1), "only int64 values are added to")
}

func TestSharedTableUpdate(t *testing.T) {
	var s Shared
	tb := s.Table("u")
	got := tb.Update("list", func(old any, ok bool) any {
		assert.True(t, !ok && old == nil, "first update sees nothing")
		return []string{"a"}
	})
	assert.Equal(t, []string{"a"}, got)
	got = tb.Update("list", func(old any, ok bool) any {
		assert.True(t, ok)
		return append(old.([]string), "b")
	})
	assert.Equal(t, []string{"a", "b"}, got)
	v, _ := tb.Get("list")
	assert.Equal(t, []string{"a", "b"}, v)
}

func TestSharedConcurrent(t *testing.T) {
	const goroutines, perG = 32, 500
	var s Shared
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			tb := s.Table("shared") // first use from many goroutines at once
			for i := range perG {
				tb.Add("sum", 1)
				tb.Update("upd", func(old any, _ bool) any {
					n, _ := old.(int)
					return n + 1
				})
				if i%50 == 0 {
					tb.Set(fmt.Sprintf("g%d", g), i)
					_, _ = tb.Get("sum")
					_ = tb.Len()
					_ = s.Names()
				}
			}
		})
	}
	wg.Wait()
	tb := s.Table("shared")
	v, _ := tb.Get("sum")
	assert.Equal(t, int64(goroutines*perG), v, "concurrent Adds sum correctly")
	v, _ = tb.Get("upd")
	assert.Equal(t, goroutines*perG, v, "concurrent Updates are atomic")
	assert.Equal(t, goroutines+2, tb.Len())
	assert.Equal(t, []string{"shared"}, s.Names(), "one table however many goroutines created it")
}
