package workergroups

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
	}{
		{"name=abc;workers=4;nonblock=0;usleep=0", Spec{Name: "abc", Workers: 4}},
		{"name=tkv;workers=1;nonblock=1;usleep=250", Spec{Name: "tkv", Workers: 1, Nonblock: true, Usleep: 250 * time.Microsecond}},
		{"name=abc;workers=4", Spec{Name: "abc", Workers: 4}},
		{"workers=2;usleep=10;name=x", Spec{Name: "x", Workers: 2, Usleep: 10 * time.Microsecond}},
		{"NAME=Abc;Workers=3;NonBlock=1", Spec{Name: "Abc", Workers: 3, Nonblock: true}},
		{" name = abc ; workers = 4 ;", Spec{Name: "abc", Workers: 4}},
		{"name=core:tkv-1_a.b;workers=10000;usleep=60000000", Spec{Name: "core:tkv-1_a.b", Workers: MaxWorkers, Usleep: MaxUsleep}},
		{"name=default;workers=8", Spec{Name: "default", Workers: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			back, err := ParseSpec(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back)
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // part of the message naming the problem
	}{
		{"", "empty spec"},
		{" ; ", "empty spec"},
		{"workers=4", "missing or empty name"},
		{"name=;workers=4", "missing or empty name"},
		{"name= ;workers=4", "missing or empty name"},
		{"name=abc", "missing workers"},
		{"name=abc;workers=0", "workers=0: want 1..10000"},
		{"name=abc;workers=-2", "workers=-2"},
		{"name=abc;workers=10001", "workers=10001"},
		{"name=abc;workers=four", `workers="four": not a number`},
		{"name=abc;workers=", `workers="": not a number`},
		{"name=abc;workers=4.0", `workers="4.0": not a number`},
		{"name=abc;workers=99999999999999999999", "number out of range"},
		{"name=abc;workers=4;nonblock=2", `nonblock="2": want 0 or 1`},
		{"name=abc;workers=4;nonblock=yes", `nonblock="yes"`},
		{"name=abc;workers=4;usleep=-1", "usleep=-1"},
		{"name=abc;workers=4;usleep=x", `usleep="x": not a number`},
		{"name=abc;workers=4;usleep=60000001", "usleep=60000001"},
		{"name=abc;workers=4;queue=10", `unknown key "queue"`},
		{"name=abc;workers=4;foo=1", `unknown key "foo"`},
		{"name=abc;workers", `key "workers" has no value`},
		{"name=abc;=4", `value "4" has no key`},
		{"name=abc;;workers=4", "empty parameter"},
		{"name=abc;workers=4;;", "empty parameter"},
		{"name=abc;name=def;workers=4", `duplicate key "name"`},
		{"name=abc;workers=4;WORKERS=5", `duplicate key "WORKERS"`},
		{"name=a b;workers=4", `name "a b"`},
		{"name=ab/c;workers=4", `name "ab/c"`},
		{"name=" + strings.Repeat("x", MaxNameLen+1) + ";workers=1", "longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSpec(tt.in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrBadSpec)
			assert.True(t, strings.HasPrefix(err.Error(), "workergroups: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestSpecValidate(t *testing.T) {
	assert.NoError(t, Spec{Name: "a", Workers: 1}.Validate())
	assert.ErrorIs(t, Spec{Workers: 1}.Validate(), ErrBadSpec)
	assert.ErrorIs(t, Spec{Name: "a"}.Validate(), ErrBadSpec)
	assert.ErrorIs(t, Spec{Name: "a", Workers: 1, Usleep: -1}.Validate(), ErrBadSpec)
	assert.ErrorIs(t, Spec{Name: "a", Workers: 1, Queue: -1}.Validate(), ErrBadSpec)
	assert.ErrorIs(t, Spec{Name: "a", Workers: 1, Queue: MaxQueue + 1}.Validate(), ErrBadSpec)
}

// FuzzParseSpec checks that ParseSpec never panics, that every error wraps
// ErrBadSpec, and that every accepted spec is valid and survives a round
// trip through String.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"name=abc;workers=4;nonblock=0;usleep=0",
		"name=tkv;workers=1;nonblock=1;usleep=250;",
		" NAME = x ; Workers = 2 ",
		"name=abc;workers=four",
		"name=;workers=1",
		"name=a;name=b;workers=1",
		"name=a;workers=1;queue=3",
		"=;;=",
		"name=a;workers=99999999999999999999",
		"name=\xff;workers=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := ParseSpec(in)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) || !strings.HasPrefix(err.Error(), "workergroups: ") {
				t.Fatalf("ParseSpec(%q): error %q does not wrap ErrBadSpec", in, err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("ParseSpec(%q) accepted an invalid spec: %v", in, err)
		}
		back, err := ParseSpec(spec.String())
		if err != nil || back != spec {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", in, spec, spec.String(), back, err)
		}
	})
}
