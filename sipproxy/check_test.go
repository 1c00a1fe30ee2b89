package sipproxy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Small assertion helpers. Each names the check that failed; the variadic
// msg is a format and its arguments, printed in front of the failure.

func label(msg []any) string {
	if len(msg) == 0 {
		return ""
	}
	if f, ok := msg[0].(string); ok {
		return fmt.Sprintf(f, msg[1:]...) + ": "
	}
	return fmt.Sprint(msg...) + ": "
}

// need stops the test when err is not nil.
func need(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%sunexpected error: %v", label(msg), err)
	}
}

// noErr reports err when it is not nil and goes on.
func noErr(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err != nil {
		t.Errorf("%sunexpected error: %v", label(msg), err)
	}
}

// errIs reports when err does not match target with errors.Is.
func errIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%serror %v, want one matching %v", label(msg), err, target)
	}
}

// needIs stops the test when err does not match target with errors.Is.
func needIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%serror %v, want one matching %v", label(msg), err, target)
	}
}

// eq reports when want and got differ (reflect.DeepEqual).
func eq[T any](t testing.TB, want, got T, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%sgot %#v, want %#v", label(msg), got, want)
	}
}

// needEq stops the test when want and got differ.
func needEq[T any](t testing.TB, want, got T, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%sgot %#v, want %#v", label(msg), got, want)
	}
}

// truth reports when cond is false.
func truth(t testing.TB, cond bool, msg ...any) {
	t.Helper()
	if !cond {
		t.Errorf("%scondition is false", label(msg))
	}
}

// has reports when s does not contain sub.
func has(t testing.TB, s, sub string, msg ...any) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s%q does not contain %q", label(msg), s, sub)
	}
}

// hasNot reports when s contains sub.
func hasNot(t testing.TB, s, sub string, msg ...any) {
	t.Helper()
	if strings.Contains(s, sub) {
		t.Errorf("%s%q contains %q", label(msg), s, sub)
	}
}
