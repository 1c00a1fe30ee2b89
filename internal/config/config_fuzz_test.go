package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func fuzzFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
	fs.String("log-level", "info", "")
	fs.Int("async-workers", 1, "")
	fs.StringArray("listen", nil, "")
	fs.Duration("shutdown-timeout", 0, "")
	fs.String("admin-token", "", "")
	return fs
}

// FuzzParseFile: any file either parses into entries that name a flag of
// the set, or fails with ErrConfig; never a panic. Applying what parsed
// either works or fails with ErrConfig too.
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{"log-level: debug\n", "async:\n  workers: 4\n", "listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]\n",
		"shutdown_timeout: 5s\n", "- a\n", "a: {b: [c, {d: e}]}\n", "log-level: [1, 2]\n", "{\"async-workers\": \"x\"}", "admin-token: s3cret\n", ":\n"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, ignore bool) {
		fs := fuzzFlags()
		l, err := ParseFile(fs, "fuzz.yaml", b, Options{IgnoreUnknown: ignore})
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			return
		}
		for name := range l {
			if fs.Lookup(name) == nil {
				t.Fatalf("entry for unknown flag %q", name)
			}
		}
		if _, err := Apply(fs, nil, l); err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("Apply error %v is not ErrConfig", err)
		}
	})
}

// FuzzRedact: a password written user:password@host never survives.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"rabbitmq:guest:pw@127.0.0.1/q", "nats://u:pw@h:4222", "E=rabbitmq:u:pw@h/k, nats://a:b@c", "plain"} {
		f.Add(s, "pw")
	}
	f.Fuzz(func(t *testing.T, s, pw string) {
		if pw == "" || strings.ContainsAny(pw, "@:/ ,\t\n=") {
			return
		}
		in := "nats://user:" + pw + "@host:4222 " + s
		out := Redact(in)
		if !strings.HasPrefix(out, "nats://user:xxxxx@host:4222 ") || strings.Contains(out, "user:"+pw+"@") {
			t.Fatalf("Redact(%q) = %q keeps the password", in, out)
		}
	})
}
