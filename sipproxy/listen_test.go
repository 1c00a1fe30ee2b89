package sipproxy

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var listenCases = []struct {
	in   string
	want Listen
	err  string // a word the error must contain; "" means no error
}{
	{in: "udp:127.0.0.1:5060", want: Listen{"udp", "127.0.0.1", 5060}},
	{in: "tcp:10.0.0.1:5070", want: Listen{"tcp", "10.0.0.1", 5070}},
	{in: "tls:0.0.0.0:5061", want: Listen{"tls", "0.0.0.0", 5061}},
	{in: "ws:192.168.1.2:8088", want: Listen{"ws", "192.168.1.2", 8088}},
	{in: "UDP:127.0.0.1:5060", want: Listen{"udp", "127.0.0.1", 5060}},
	{in: "udp:127.0.0.1:0", want: Listen{"udp", "127.0.0.1", 0}},
	{in: "udp:127.0.0.1:65535", want: Listen{"udp", "127.0.0.1", 65535}},
	// default ports
	{in: "udp:127.0.0.1", want: Listen{"udp", "127.0.0.1", 5060}},
	{in: "tcp:127.0.0.1", want: Listen{"tcp", "127.0.0.1", 5060}},
	{in: "tls:127.0.0.1", want: Listen{"tls", "127.0.0.1", 5061}},
	{in: "ws:127.0.0.1", want: Listen{"ws", "127.0.0.1", 8080}},
	// IPv6 in brackets
	{in: "tcp:[::1]:5060", want: Listen{"tcp", "::1", 5060}},
	{in: "udp:[::1]", want: Listen{"udp", "::1", 5060}},
	{in: "tls:[2001:db8::10]", want: Listen{"tls", "2001:db8::10", 5061}},
	{in: "udp:[::]:5080", want: Listen{"udp", "::", 5080}},
	// errors
	{in: "", err: "proto"},
	{in: "127.0.0.1:5060", err: "unknown protocol"},
	{in: "udp", err: "proto"},
	{in: "udp:", err: "proto"},
	{in: "sctp:127.0.0.1:5060", err: "unknown protocol"},
	{in: "wss:127.0.0.1:443", err: "unknown protocol"},
	{in: "udp:127.0.0.1:abc", err: "port"},
	{in: "udp:127.0.0.1:", err: "port"},
	{in: "udp:127.0.0.1:70000", err: "port"},
	{in: "udp:127.0.0.1:65536", err: "port"},
	{in: "udp:127.0.0.1:-1", err: "port"},
	{in: "udp:example.com:5060", err: "not an IP"},
	{in: "udp:localhost", err: "not an IP"},
	{in: "udp::5060", err: "host"},
	{in: "udp:::1", err: "brackets"},
	{in: "udp:::1:5060", err: "brackets"},
	{in: "tcp:2001:db8::10", err: "brackets"},
	{in: "udp:[::1", err: "]"},
	{in: "udp:[::1]5060", err: "junk"},
	{in: "udp:[::1]:x", err: "port"},
	{in: "udp:[]:5060", err: "empty host"},
	{in: "udp:[example.com]:5060", err: "not an IP"},
	{in: "udp:256.1.1.1", err: "not an IP"},
}

func TestParseListen(t *testing.T) {
	for _, c := range listenCases {
		got, err := ParseListen(c.in)
		if c.err != "" {
			if !errors.Is(err, ErrBadListen) {
				t.Errorf("ParseListen(%q) = %+v, %v; want an ErrBadListen error", c.in, got, err)
				continue
			}
			assert.Contains(t, err.Error(), c.err, "ParseListen(%q)", c.in)
			assert.Equal(t, Listen{}, got, "ParseListen(%q) returns the zero Listen on error", c.in)
			continue
		}
		if err != nil {
			t.Errorf("ParseListen(%q): %v", c.in, err)
			continue
		}
		assert.Equal(t, c.want, got, "ParseListen(%q)", c.in)
	}
}

func TestListenStringRoundTrip(t *testing.T) {
	for in, want := range map[string]string{
		"udp:127.0.0.1":      "udp:127.0.0.1:5060",
		"TCP:10.0.0.1:5070":  "tcp:10.0.0.1:5070",
		"tcp:[::1]":          "tcp:[::1]:5060",
		"tls:[2001:db8::10]": "tls:[2001:db8::10]:5061",
	} {
		l, err := ParseListen(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, l.String(), "String of %q", in)
		back, err := ParseListen(l.String())
		require.NoError(t, err, "re-parse %q", l.String())
		assert.Equal(t, l, back)
	}
	assert.Equal(t, "[::1]:5060", Listen{"tcp", "::1", 5060}.Addr())
	assert.Equal(t, "127.0.0.1:5060", Listen{"udp", "127.0.0.1", 5060}.Addr())
}

var targetCases = []struct {
	in   string
	want Target
	err  string
}{
	{in: "10.0.0.2:5070", want: Target{"UDP", "10.0.0.2", 5070}},
	{in: "10.0.0.2", want: Target{"UDP", "10.0.0.2", 5060}},
	{in: "gw.example.com:5080", want: Target{"UDP", "gw.example.com", 5080}},
	{in: "gw.example.com", want: Target{"UDP", "gw.example.com", 5060}},
	{in: "tcp:10.0.0.2:5070", want: Target{"TCP", "10.0.0.2", 5070}},
	{in: "TCP:10.0.0.2:5070", want: Target{"TCP", "10.0.0.2", 5070}},
	{in: "udp:10.0.0.2", want: Target{"UDP", "10.0.0.2", 5060}},
	{in: "ws:10.0.0.2:8080", want: Target{"WS", "10.0.0.2", 8080}},
	{in: "tls:10.0.0.2:5061", want: Target{"TLS", "10.0.0.2", 5061}},
	{in: "sip:10.0.0.2:5070", want: Target{"UDP", "10.0.0.2", 5070}},
	{in: "sip:10.0.0.2:5070;transport=tcp", want: Target{"TCP", "10.0.0.2", 5070}},
	{in: "sip:10.0.0.2;transport=TCP", want: Target{"TCP", "10.0.0.2", 5060}},
	{in: "sip:gw.example.com;lr;transport=tls", want: Target{"TLS", "gw.example.com", 5061}},
	{in: "tls:gw.example.com", want: Target{"TLS", "gw.example.com", 5061}},
	{in: "tls:10.0.0.2;transport=tcp", want: Target{"TCP", "10.0.0.2", 5060}},
	{in: "10.0.0.2;transport=tls", want: Target{"TLS", "10.0.0.2", 5061}},
	{in: "sips:10.0.0.2:5071", want: Target{"TLS", "10.0.0.2", 5071}},
	{in: "sips:gw.example.com;transport=tcp", want: Target{"TLS", "gw.example.com", 5061}},
	{in: "SIPS:gw.example.com", want: Target{"TLS", "gw.example.com", 5061}},
	{in: "SIP:10.0.0.2", want: Target{"UDP", "10.0.0.2", 5060}},
	// a user part of a sip/sips URI is not part of the host
	{in: "sip:bob@10.0.0.1", want: Target{"UDP", "10.0.0.1", 5060}},
	{in: "sip:bob:secret@10.0.0.1:5070;transport=tcp", want: Target{"TCP", "10.0.0.1", 5070}},
	{in: "sips:bob@gw.example.com", want: Target{"TLS", "gw.example.com", 5061}},
	{in: "sip:bob@[::1]:5070", want: Target{"UDP", "::1", 5070}},
	{in: "sip:alice;day=tuesday@gw.example.com", want: Target{"UDP", "gw.example.com", 5060}},
	// DNS names
	{in: "localhost", want: Target{"UDP", "localhost", 5060}},
	{in: "gw-1.example.com.", want: Target{"UDP", "gw-1.example.com.", 5060}},
	{in: "3cx.example.com", want: Target{"UDP", "3cx.example.com", 5060}},
	{in: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", want: Target{"UDP", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", 5060}},
	{in: "[fe80::1%eth0]:5060", want: Target{"UDP", "fe80::1%eth0", 5060}},
	{in: "10.0.0.2:5070;transport=ws", want: Target{"WS", "10.0.0.2", 5070}},
	{in: "tcp:10.0.0.2:5070;transport=udp", want: Target{"UDP", "10.0.0.2", 5070}},
	{in: "[::1]:5070", want: Target{"UDP", "::1", 5070}},
	{in: "tcp:[2001:db8::1]", want: Target{"TCP", "2001:db8::1", 5060}},
	{in: "sip:[::1]:5070;transport=tcp", want: Target{"TCP", "::1", 5070}},
	// errors
	{in: "", err: "empty host"},
	{in: ":5060", err: "empty host"},
	{in: "tcp:", err: "empty host"},
	{in: "sip:", err: "empty host"},
	{in: "10.0.0.2:0", err: "port 0"},
	{in: "10.0.0.2:70000", err: "port"},
	{in: "10.0.0.2:x", err: "port"},
	{in: "10.0.0.2;transport=sctp", err: "unknown transport"},
	{in: "10.0.0.2;transport=", err: "unknown transport"},
	{in: "::1", err: "brackets"},
	{in: "[::1", err: "]"},
	{in: "[::1]x", err: "junk"},
	{in: "[]", err: "empty host"},
	{in: "sip:[]:5060", err: "empty host"},
	{in: "sips:10.0.0.2;transport=udp", err: "needs TLS"},
	{in: "sips:10.0.0.2;transport=ws", err: "needs TLS"},
	// hosts that are neither an IP address nor a DNS name
	{in: "bob@10.0.0.1", err: "bad host"},
	{in: "tcp:bob@10.0.0.1:5060", err: "bad host"},
	{in: "sip:@10.0.0.1", err: "empty user"},
	{in: "sip:bob@", err: "empty host"},
	{in: "sip:a@b@10.0.0.1", err: "bad host"},
	{in: "a b:5060", err: "bad host"},
	{in: "a b", err: "bad host"},
	{in: "gw_1.example.com", err: "bad host"},
	{in: "-gw.example.com", err: "bad host"},
	{in: "gw-.example.com", err: "bad host"},
	{in: "gw..example.com", err: "bad host"},
	{in: ".example.com", err: "bad host"},
	{in: "gw.example.com..", err: "bad host"},
	{in: "256.1.1.1", err: "bad host"},
	{in: "10.0.0", err: "bad host"},
	{in: "010.0.0.1", err: "bad host"},
	{in: "12345", err: "bad host"},
	{in: "[gw.example.com]:5060", err: "not an IP"},
	{in: "sip:10.0.0.2?Subject=x", err: "bad host"},
	{in: "gw.exämple.com", err: "bad host"},
	{in: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", err: "bad host"},
}

func TestParseTarget(t *testing.T) {
	for _, c := range targetCases {
		got, err := ParseTarget(c.in)
		if c.err != "" {
			if !errors.Is(err, ErrBadListen) {
				t.Errorf("ParseTarget(%q) = %+v, %v; want an ErrBadListen error", c.in, got, err)
				continue
			}
			assert.Contains(t, err.Error(), c.err, "ParseTarget(%q)", c.in)
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", c.in, err)
			continue
		}
		assert.Equal(t, c.want, got, "ParseTarget(%q)", c.in)
	}
}

func TestTargetString(t *testing.T) {
	tg := Target{"TCP", "2001:db8::1", 5070}
	assert.Equal(t, "[2001:db8::1]:5070", tg.Addr())
	assert.Equal(t, "tcp:[2001:db8::1]:5070", tg.String())
	back, err := ParseTarget(tg.String())
	require.NoError(t, err)
	assert.Equal(t, tg, back)
}

func TestParseTargetTLSDefaultPort(t *testing.T) {
	for _, in := range []string{"tls:10.0.0.2", "sip:10.0.0.2;transport=tls"} {
		got, err := ParseTarget(in)
		require.NoError(t, err, in)
		assert.Equal(t, Target{"TLS", "10.0.0.2", 5061}, got, "ParseTarget(%q)", in)
	}
}

func TestParseTargetSIPS(t *testing.T) {
	got, err := ParseTarget("sips:10.0.0.2")
	require.NoError(t, err)
	assert.Equal(t, Target{"TLS", "10.0.0.2", 5061}, got)
}

func TestParseTargetEmptyBracketHost(t *testing.T) {
	for _, in := range []string{"[]", "sip:[]:5060", "tcp:[]"} {
		got, err := ParseTarget(in)
		if !errors.Is(err, ErrBadListen) {
			t.Errorf("ParseTarget(%q) = %+v, %v; want an ErrBadListen error", in, got, err)
		}
	}
}

func FuzzParseListen(f *testing.F) {
	for _, c := range listenCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseListen(s)
		if err != nil {
			if !errors.Is(err, ErrBadListen) {
				t.Fatalf("ParseListen(%q): error %v is not ErrBadListen", s, err)
			}
			return
		}
		if _, ok := defaultPorts[l.Network]; !ok {
			t.Fatalf("ParseListen(%q): network %q", s, l.Network)
		}
		if l.Port < 0 || l.Port > 65535 {
			t.Fatalf("ParseListen(%q): port %d", s, l.Port)
		}
		back, err := ParseListen(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseListen(%q) = %+v; re-parse of %q = %+v, %v", s, l, l.String(), back, err)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, c := range targetCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			if !errors.Is(err, ErrBadListen) {
				t.Fatalf("ParseTarget(%q): error %v is not ErrBadListen", s, err)
			}
			return
		}
		if tg.Port < 1 || tg.Port > 65535 {
			t.Fatalf("ParseTarget(%q) = %+v", s, tg)
		}
		switch tg.Transport {
		case "UDP", "TCP", "TLS", "WS":
		default:
			t.Fatalf("ParseTarget(%q): transport %q", s, tg.Transport)
		}
	})
}
