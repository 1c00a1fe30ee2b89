package evi

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseSocket(t *testing.T) {
	for _, tc := range []struct {
		in, scheme, addr, str string
	}{
		{"udp:127.0.0.1:8888", "udp", "127.0.0.1:8888", "udp:127.0.0.1:8888"},
		{"UDP:host:1", "udp", "host:1", "udp:host:1"},
		{"local:audit", "local", "audit", "local:audit"},
		{"rabbitmq:guest:guest@localhost:5672/x?key", "rabbitmq", "guest:guest@localhost:5672/x?key", "rabbitmq:guest:xxxxx@localhost:5672/x?key"},
		{"rabbitmq:user@localhost/key", "rabbitmq", "user@localhost/key", "rabbitmq:user@localhost/key"},
		{"rabbitmq:u:p@ss:w@rd@host/key", "rabbitmq", "u:p@ss:w@rd@host/key", "rabbitmq:u:xxxxx@host/key"},
		{"amqp+tls://u:p@h/k", "amqp+tls", "//u:p@h/k", "amqp+tls://u:xxxxx@h/k"},
	} {
		s, err := ParseSocket(tc.in)
		noErr(t, err)
		equal(t, tc.scheme, s.Scheme())
		equal(t, tc.addr, s.Address())
		equal(t, tc.str, s.String())
		if strings.Contains(tc.addr, "@") && strings.Contains(Redact(tc.in), ":p") {
			t.Errorf("Redact(%q) = %q", tc.in, Redact(tc.in))
		}
	}
	for _, in := range []string{"", "udp", ":x", "udp:", "1x:y", "a b:c", "ü:x"} {
		_, err := ParseSocket(in)
		errIs(t, err, ErrMalformedSocket)
	}
	equal(t, "", Socket{}.String())
	equal(t, "rabbitmq:xxxxx@h/k", Redact("rabbitmq:u:p@h/k"))
	equal(t, "udp:h:1", Redact("udp:h:1"))
	equal(t, "u@h", Redact("u@h"))
}

// A password never shows through String, %v, %+v, %#v, slog or errors.
func TestSocketNeverLeaksPassword(t *testing.T) {
	const raw = "rabbitmq:admin:s3cr3t@broker:5672/sip"
	s, err := ParseSocket(raw)
	noErr(t, err)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "socket", s)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "socket", s)
	for _, out := range []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logs.String(),
		Redact(raw), Redact("admin:s3cr3t@broker"), Redact("E=" + raw), Redact("E:X=" + raw),
	} {
		if strings.Contains(out, "s3cr3t") {
			t.Fatalf("password leaked: %s", out)
		}
	}
	_, _, err = ParseEventFlag("BAD NAME=" + raw)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("ParseEventFlag error %v", err)
	}
	_, err = ParseSocket("bad scheme:admin:s3cr3t@h")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("ParseSocket error %v", err)
	}
}

func TestParseEventFlag(t *testing.T) {
	name, s, err := ParseEventFlag("E_SIP_MESSAGE=udp:127.0.0.1:8888")
	noErr(t, err)
	equal(t, "E_SIP_MESSAGE", name)
	equal(t, "udp:127.0.0.1:8888", s.String())
	// Only the first '=' splits: the socket may contain more.
	_, s, err = ParseEventFlag("E=rabbitmq:u:p@h/x?k=v")
	noErr(t, err)
	equal(t, "u:p@h/x?k=v", s.Address())
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"E_SIP_MESSAGE", ErrMalformedSocket},
		{"=udp:h:1", ErrInvalidName},
		{"E X=udp:h:1", ErrInvalidName},
		{"E=", ErrMalformedSocket},
		{"E=udp", ErrMalformedSocket},
	} {
		_, _, err := ParseEventFlag(tc.in)
		errIs(t, err, tc.want)
	}
}
