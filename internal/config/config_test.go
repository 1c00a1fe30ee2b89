package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type settings struct {
	level   string
	workers int
	timeout time.Duration
	listen  []string
	token   string
	cfg     string
}

func flagSet(s *settings) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.StringVar(&s.level, "log-level", "info", "")
	fs.IntVar(&s.workers, "async-workers", 1, "")
	fs.DurationVar(&s.timeout, "shutdown-timeout", 10*time.Second, "")
	fs.StringArrayVar(&s.listen, "listen", []string{"udp:127.0.0.1:5060"}, "")
	fs.StringVar(&s.token, "admin-token", "", "")
	fs.StringVar(&s.cfg, "config", "", "")
	return fs
}

// load runs the layering as the program does: parse, then env and file.
func load(t *testing.T, args []string, env []string, file string) (*settings, map[string]Source, error) {
	s, _, src, err := loadFS(t, args, env, file)
	return s, src, err
}

func loadFS(t *testing.T, args []string, env []string, file string) (*settings, *pflag.FlagSet, map[string]Source, error) {
	t.Helper()
	s := &settings{}
	fs := flagSet(s)
	require.NoError(t, fs.Parse(args))
	el, err := Environ(fs, env, Options{})
	if err != nil {
		return s, fs, nil, err
	}
	fl := Layer{}
	if file != "" {
		if fl, err = ParseFile(fs, "sipasync.yaml", []byte(file), Options{}); err != nil {
			return s, fs, nil, err
		}
	}
	src, err := Apply(fs, el, fl)
	return s, fs, src, err
}

func TestPrecedenceFlagsEnvFileDefaults(t *testing.T) {
	const file = "log-level: warn\nasync:\n  workers: 3\nshutdown_timeout: 30s\nlisten: [udp:127.0.0.1:5070, tcp:127.0.0.1:5070]\n"
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		file    string
		level   string
		workers int
		timeout time.Duration
		listen  []string
		from    Source // where log-level came from
	}{
		{name: "defaults", level: "info", workers: 1, timeout: 10 * time.Second, listen: []string{"udp:127.0.0.1:5060"}, from: FromDefault},
		{name: "file over defaults", file: file, level: "warn", workers: 3, timeout: 30 * time.Second,
			listen: []string{"udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"}, from: FromFile},
		{name: "env over file", file: file, env: []string{"SIPASYNC_LOG_LEVEL=error", "SIPASYNC_LISTEN=udp:127.0.0.1:6000", "PATH=/bin"},
			level: "error", workers: 3, timeout: 30 * time.Second, listen: []string{"udp:127.0.0.1:6000"}, from: FromEnv},
		{name: "flags over env and file", file: file, env: []string{"SIPASYNC_LOG_LEVEL=error", "SIPASYNC_ASYNC_WORKERS=5"},
			args:  []string{"--log-level", "debug", "--listen", "udp:127.0.0.1:7000"},
			level: "debug", workers: 5, timeout: 30 * time.Second, listen: []string{"udp:127.0.0.1:7000"}, from: FromFlag},
		{name: "env list is comma separated", env: []string{"SIPASYNC_LISTEN=udp:127.0.0.1:1, tcp:127.0.0.1:2"},
			level: "info", workers: 1, timeout: 10 * time.Second, listen: []string{"udp:127.0.0.1:1", "tcp:127.0.0.1:2"}, from: FromDefault},
		{name: "reserved test variables pass", env: []string{"SIPASYNC_NATS_URL=nats://x"},
			level: "info", workers: 1, timeout: 10 * time.Second, listen: []string{"udp:127.0.0.1:5060"}, from: FromDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, src, err := load(t, tc.args, tc.env, tc.file)
			require.NoError(t, err)
			assert.Equal(t, tc.level, s.level)
			assert.Equal(t, tc.workers, s.workers)
			assert.Equal(t, tc.timeout, s.timeout)
			assert.Equal(t, tc.listen, s.listen)
			assert.Equal(t, tc.from, src["log-level"])
		})
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        []string
		want       string
	}{
		{name: "unknown key", file: "log-level: info\nasync-wrokers: 2\n", want: `line 2: unknown key "async-wrokers"`},
		{name: "unknown nested key", file: "async:\n  wrokers: 2\n", want: `line 2: unknown key "async.wrokers"`},
		{name: "bad value", file: "async-workers: many\n", want: `line 1: key "async-workers": bad value "many"`},
		{name: "bad duration", file: "shutdown-timeout: 10 parsecs\n", want: `key "shutdown-timeout": bad value`},
		{name: "list for a single flag", file: "log-level: [a, b]\n", want: `key "log-level" takes one value`},
		{name: "twice", file: "async-workers: 2\nasync:\n  workers: 3\n", want: `line 3: key "async.workers" sets --async-workers again (line 1)`},
		{name: "mapping for a value", file: "log-level:\n  x: 1\n", want: `key "log-level" takes a value, not a mapping`},
		{name: "no value", file: "log-level:\n", want: `key "log-level" has no value`},
		{name: "not a mapping", file: "- a\n- b\n", want: "want a mapping"},
		{name: "config inside config", file: "config: other.yaml\n", want: `unknown key "config"`},
		{name: "unknown env", env: []string{"SIPASYNC_ASYNC_WROKERS=2"}, want: "unknown variable SIPASYNC_ASYNC_WROKERS"},
		{name: "bad env value", env: []string{"SIPASYNC_ASYNC_WORKERS=x"}, want: `environment: key "SIPASYNC_ASYNC_WORKERS": bad value "x"`},
		{name: "bad yaml", file: "a: [\n", want: "sipasync.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, nil, tc.env, tc.file)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrConfig))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestIgnoreUnknownForReload(t *testing.T) {
	s := &settings{}
	fs := flagSet(s)
	l, err := ParseFile(fs, "f", []byte("delay: 2s\nlog-level: debug\n"), Options{IgnoreUnknown: true})
	require.NoError(t, err)
	_, err = Apply(fs, nil, l)
	require.NoError(t, err)
	assert.Equal(t, "debug", s.level)
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sipasync.yaml")
	require.NoError(t, os.WriteFile(p, []byte("async-workers: 4\n"), 0o600))
	s := &settings{}
	fs := flagSet(s)
	l, err := ReadFile(fs, p, Options{})
	require.NoError(t, err)
	_, err = Apply(fs, nil, l)
	require.NoError(t, err)
	assert.Equal(t, 4, s.workers)
	_, err = ReadFile(fs, filepath.Join(t.TempDir(), "nope.yaml"), Options{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/q": "E_SIP_MESSAGE=rabbitmq:guest:xxxxx@127.0.0.1:5672/q",
		"guest:p@ss@h, nats://u:a:b@h":                        "guest:xxxxx@h, nats://u:xxxxx@h",
		"nats://alice:pw@127.0.0.1:4222":                      "nats://alice:xxxxx@127.0.0.1:4222",
		"udp:127.0.0.1:8888":                                  "udp:127.0.0.1:8888",
	} {
		out := Redact(in)
		assert.NotContains(t, out, "guest:guest", in)
		assert.NotContains(t, out, ":pw@", in)
		assert.Contains(t, out, want, in)
	}
}

func TestPrintRoundTripsAndRedacts(t *testing.T) {
	s, fs, src, err := loadFS(t, []string{"--admin-token", "s3cret"},
		[]string{"SIPASYNC_LISTEN=udp:127.0.0.1:6000,tcp:127.0.0.1:6000"}, "async-workers: 3\n")
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, Print(&b, fs, src, "config"))
	out := b.String()
	assert.NotContains(t, out, "s3cret")
	assert.Contains(t, out, "admin-token: <redacted> # flag")
	assert.Contains(t, out, "async-workers: 3 # file")
	assert.Contains(t, out, "log-level: info # default")
	assert.Contains(t, out, "listen: ['udp:127.0.0.1:6000', 'tcp:127.0.0.1:6000'] # env")
	assert.NotContains(t, out, "config:")

	// What --print-config prints is a config file that gives the same values.
	s2 := &settings{}
	fs2 := flagSet(s2)
	l, err := ParseFile(fs2, "printed", b.Bytes(), Options{})
	require.NoError(t, err)
	delete(l, "admin-token")
	_, err = Apply(fs2, nil, l)
	require.NoError(t, err)
	assert.Equal(t, s.workers, s2.workers)
	assert.Equal(t, s.listen, s2.listen)
	assert.Equal(t, s.timeout, s2.timeout)
}
