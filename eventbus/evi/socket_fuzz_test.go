package evi

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseSocket: a socket that parses has a valid lower-case scheme and
// a non-empty address, and its string form parses back to the same scheme;
// a password never shows in String or in an error.
func FuzzParseSocket(f *testing.F) {
	for _, s := range []string{"udp:127.0.0.1:8888", "rabbitmq:guest:secret@127.0.0.1:5672/q", "local:NAME",
		"UDP:x", ":x", "udp:", "1udp:x", "a+b-c.d:x", "udp:user:pw@h", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sock, err := ParseSocket(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedSocket) {
				t.Fatalf("ParseSocket(%q) error %v is not ErrMalformedSocket", s, err)
			}
			return
		}
		if !validScheme(sock.Scheme()) || sock.Scheme() != strings.ToLower(sock.Scheme()) || sock.Address() == "" {
			t.Fatalf("ParseSocket(%q) = %q, %q", s, sock.Scheme(), sock.Address())
		}
		back, err := ParseSocket(sock.String())
		if err != nil || back.Scheme() != sock.Scheme() {
			t.Fatalf("String %q does not parse back: %v", sock.String(), err)
		}
		if sock.String() != sock.Scheme()+":"+redactAddress(sock.Address()) {
			t.Fatalf("String %q", sock.String())
		}
	})
}

// FuzzParseEventFlag: --event NAME=SOCKET either parses into a valid event
// name and socket or fails with an error that names neither more than the
// redacted input.
func FuzzParseEventFlag(f *testing.F) {
	for _, s := range []string{"E_SIP_MESSAGE=udp:127.0.0.1:8888", "E=rabbitmq:u:pw@h/k", "=udp:x", "E=", "E", "e=udp:x", "E=x:y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, sock, err := ParseEventFlag(s)
		if err != nil {
			return
		}
		if validEventName(name) != nil {
			t.Fatalf("ParseEventFlag(%q): invalid name %q accepted", s, name)
		}
		// NAME=SOCKET splits at the first '=' and the socket keeps all but
		// its scheme's case.
		rest := s[len(name)+1:]
		if s[:len(name)+1] != name+"=" || !strings.EqualFold(rest, sock.Scheme()+":"+sock.Address()) ||
			rest[len(sock.Scheme()):] != ":"+sock.Address() {
			t.Fatalf("ParseEventFlag(%q) = %q, %q:%q", s, name, sock.Scheme(), sock.Address())
		}
	})
}
