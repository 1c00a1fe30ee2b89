package workergroups

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGroupsRegistry(t *testing.T) {
	gs := newGroups(t, WithDefaultWorkers(3))
	def := gs.Default()
	assert.Equal(t, "default", def.Name())
	assert.Equal(t, 3, def.Spec().Workers)
	assert.Equal(t, DefaultQueue, def.Spec().Queue)

	for _, s := range []string{"name=abc;workers=4;nonblock=0;usleep=0", "name=tkv;workers=1;nonblock=1"} {
		spec, err := ParseSpec(s)
		require.NoError(t, err)
		addGroup(t, gs, spec)
	}
	addGroup(t, gs, Spec{Name: "small", Workers: 2, Queue: 7})

	var names []string
	for _, g := range gs.List() {
		names = append(names, g.Name())
	}
	assert.Equal(t, []string{"default", "abc", "tkv", "small"}, names, "default first, then in order added")

	abc, err := gs.Lookup("abc")
	require.NoError(t, err)
	assert.Equal(t, Spec{Name: "abc", Workers: 4, Queue: DefaultQueue}, abc.Spec())
	tkv, err := gs.Lookup("tkv")
	require.NoError(t, err)
	assert.True(t, tkv.Spec().Nonblock)
	small, err := gs.Lookup("small")
	require.NoError(t, err)
	assert.Equal(t, 7, small.Spec().Queue)
	d, err := gs.Lookup("default")
	require.NoError(t, err)
	assert.Same(t, def, d)

	_, err = gs.Lookup("ABC")
	assert.ErrorIs(t, err, ErrUnknownGroup, "names are case-sensitive")
	_, err = gs.Lookup("nope")
	assert.ErrorIs(t, err, ErrUnknownGroup)
	assert.EqualError(t, err, `workergroups: unknown group "nope"`)

	_, err = gs.Add(Spec{Name: "abc", Workers: 1})
	assert.ErrorIs(t, err, ErrDuplicateGroup)
	assert.Contains(t, err.Error(), `"abc"`)
	_, err = gs.Add(Spec{Name: "default", Workers: 1})
	assert.ErrorIs(t, err, ErrDuplicateGroup)
	_, err = gs.Add(Spec{Name: "zero"})
	assert.ErrorIs(t, err, ErrBadSpec)
	assert.Len(t, gs.List(), 4, "failed adds leave the registry unchanged")

	list := gs.List()
	list[0] = nil
	assert.Same(t, def, gs.List()[0], "List returns a copy")

	assert.Equal(t, 0, stop(t, gs))
	_, err = gs.Add(Spec{Name: "late", Workers: 1})
	assert.ErrorIs(t, err, ErrStopped)
	for _, g := range gs.List() {
		assert.ErrorIs(t, g.Submit(func() {}), ErrStopped, g.Name())
	}
	undone, err := gs.Stop(context.Background())
	assert.NoError(t, err, "Stop is idempotent")
	assert.Zero(t, undone)
}

func TestNewDefaults(t *testing.T) {
	gs := newGroups(t)
	assert.Equal(t, Spec{Name: "default", Workers: 1, Queue: DefaultQueue}, gs.Default().Spec())

	gs = newGroups(t, WithQueue(5), WithDefault(Spec{Name: "ignored", Workers: 2, Nonblock: true, Usleep: 3000}))
	assert.Equal(t, Spec{Name: "default", Workers: 2, Nonblock: true, Usleep: 3000, Queue: 5}, gs.Default().Spec())

	gs = newGroups(t, WithOptions(Options{Default: Spec{Workers: 4}}))
	assert.Equal(t, 4, gs.Default().Spec().Workers)

	for _, opts := range [][]Option{
		{WithDefaultWorkers(-1)},
		{WithDefaultWorkers(MaxWorkers + 1)},
		{WithQueue(-1)},
		{WithDefault(Spec{Workers: 1, Usleep: -1})},
	} {
		_, err := New(opts...)
		assert.ErrorIs(t, err, ErrBadSpec)
	}
}

func TestStopAllCountsUndone(t *testing.T) {
	gs := newGroups(t)
	a := addGroup(t, gs, Spec{Name: "a", Workers: 1})
	b := addGroup(t, gs, Spec{Name: "b", Workers: 1})
	gt := newGate()
	for _, g := range []*Group{a, b} {
		require.NoError(t, g.Submit(gt.task()))
		recv(t, gt.started, "worker busy")
		for range 3 {
			require.NoError(t, g.Submit(func() {}))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	undone, err := gs.Stop(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 6, undone)
	close(gt.open)
	assert.Equal(t, 0, stop(t, gs))
}
