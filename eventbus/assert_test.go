package eventbus

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// Small local assertions (the nats-server habit): each fails the test at once.

func msg(args []any) string {
	if len(args) == 0 {
		return ""
	}
	if f, ok := args[0].(string); ok {
		return ": " + fmt.Sprintf(f, args[1:]...)
	}
	return ": " + fmt.Sprint(args...)
}

func noErr(t testing.TB, err error, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error %v%s", err, msg(args))
	}
}

func errIs(t testing.TB, err, target error, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v%s", err, target, msg(args))
	}
}

// equal compares with reflect.DeepEqual; numbers of different types are
// compared after converting want to got's type.
func equal(t testing.TB, want, got any, args ...any) {
	t.Helper()
	if want != nil && got != nil {
		wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
		if wv.Type() != gv.Type() && wv.Kind() != reflect.Slice && wv.CanConvert(gv.Type()) {
			want = wv.Convert(gv.Type()).Interface()
		}
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("got %s, want %s%s", short(got), short(want), msg(args))
	}
}

func isTrue(t testing.TB, cond bool, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf("condition false%s", msg(args))
	}
}

func same[T any](t testing.TB, want, got *T, args ...any) {
	t.Helper()
	if want != got {
		t.Fatalf("got %p, want the same pointer %p%s", got, want, msg(args))
	}
}

func panics(t testing.TB, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	f()
}

// short formats v for a failure message, cut to a readable length.
func short(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 300 {
		s = s[:300] + "...(cut)"
	}
	return s
}
