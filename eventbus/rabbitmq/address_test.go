package rabbitmq

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/eventbus/evi"
)

func ptr[T any](v T) *T { return &v }

func mustSocket(t testing.TB, s string) evi.Socket {
	t.Helper()
	sock, err := evi.ParseSocket(s)
	if err != nil {
		t.Fatalf("evi.ParseSocket(%q): %v", s, err)
	}
	return sock
}

func TestParseAddress(t *testing.T) {
	def := func(mod func(a *Address)) Address {
		a := Address{User: "guest", Password: "guest", Host: "127.0.0.1", Port: 5672, Vhost: "/", RoutingKey: "sipmsg"}
		mod(&a)
		return a
	}
	tests := []struct {
		socket string
		want   Address
	}{
		// The seed's forms: defaults guest/guest, 5672, exchange "".
		{"rabbitmq:127.0.0.1/sipmsg", def(func(a *Address) {})},
		{"rabbitmq:guest:guest@127.0.0.1:5672/sipmsg", def(func(a *Address) {})},
		{"rabbitmq:bob@127.0.0.1/sipmsg", def(func(a *Address) { a.User = "bob" })}, // password defaults
		{"rabbitmq:bob:s3cret@broker.example.com:5673/ex?key", def(func(a *Address) {
			a.User, a.Password, a.Host, a.Port, a.Exchange, a.RoutingKey = "bob", "s3cret", "broker.example.com", 5673, "ex", "key"
		})},
		{"RabbitMQ:127.0.0.1/logs?", def(func(a *Address) { a.Exchange, a.RoutingKey = "logs", "" })}, // fanout: empty key
		{"rabbitmq:127.0.0.1/?sipmsg", def(func(a *Address) {})},                                      // empty exchange given
		{"rabbitmq:127.0.0.1/ex?a.b?c", def(func(a *Address) { a.Exchange, a.RoutingKey = "ex", "a.b?c" })},
		{"rabbitmq:127.0.0.1/alice@example.com", def(func(a *Address) { a.RoutingKey = "alice@example.com" })},
		// A password with ':', '@', '?' and ';'; '/' escaped.
		{"rabbitmq:u:p:a@s?s;w%2Fd@h/k", def(func(a *Address) { a.User, a.Password, a.Host, a.RoutingKey = "u", "p:a@s?s;w/d", "h", "k" })},
		{"rabbitmq:u:@h/k", def(func(a *Address) { a.User, a.Password, a.Host, a.RoutingKey = "u", "", "h", "k" })},
		{"rabbitmq:[::1]:5680/k", def(func(a *Address) { a.Host, a.Port, a.RoutingKey = "::1", 5680, "k" })},
		{"rabbitmq:[fe80::1%25eth0]/k", def(func(a *Address) { a.Host, a.RoutingKey = "fe80::1%25eth0", "k" })},
		{"rabbitmq:h/a%3Fb?c%3Bd", def(func(a *Address) { a.Host, a.Exchange, a.RoutingKey = "h", "a?b", "c;d" })},
		// Beyond the seed: vhost, TLS and parameters.
		{"rabbitmq:127.0.0.1/sipmsg;vhost=prod", def(func(a *Address) { a.Vhost = "prod" })},
		{"rabbitmq:127.0.0.1/sipmsg;vhost=/a/b", def(func(a *Address) { a.Vhost = "/a/b" })},
		{"rabbitmq:127.0.0.1/sipmsg;vhost=%2F", def(func(a *Address) {})},
		{"rabbitmqs:127.0.0.1/sipmsg", def(func(a *Address) { a.TLS, a.Port = true, 5671 })},
		{"rabbitmqs:127.0.0.1:5999/sipmsg", def(func(a *Address) { a.TLS, a.Port = true, 5999 })},
		{"rabbitmq:127.0.0.1/sipmsg;heartbeat=3;sync=1;format=json;persistent=1;buffer=100;vhost=v", def(func(a *Address) {
			a.Vhost = "v"
			a.Params = Params{Heartbeat: ptr(3 * time.Second), Sync: ptr(true), Format: ptr(FormatJSON), Persistent: ptr(true), Buffer: ptr(100)}
		})},
		// OpenSIPS's name of the parameter is accepted as well.
		{"rabbitmq:127.0.0.1/sipmsg;sync_mode=1", def(func(a *Address) { a.Params = Params{Sync: ptr(true)} })},
		{"rabbitmq:127.0.0.1/sipmsg;SYNC_MODE=0", def(func(a *Address) { a.Params = Params{Sync: ptr(false)} })},
		{"rabbitmq:127.0.0.1/sipmsg;HEARTBEAT=0;sync=0;format=GRAMMAR", def(func(a *Address) {
			a.Params = Params{Heartbeat: ptr(time.Duration(0)), Sync: ptr(false), Format: ptr(FormatGrammar)}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.socket, func(t *testing.T) {
			got, err := ParseAddress(mustSocket(t, tt.socket))
			noErr(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %#v %+v\nwant %#v %+v", got, got.Params, tt.want, tt.want.Params)
			}
			// String is a socket that parses back to the same address
			// (parameters other than vhost aside, password redacted).
			back, err := ParseAddress(mustSocket(t, got.String()))
			noErr(t, err)
			back.Password, back.Params = got.Password, got.Params
			if !reflect.DeepEqual(back, got) {
				t.Fatalf("String %q parses to %#v, want %#v", got.String(), back, got)
			}
		})
	}
}

func TestParseAddressErrors(t *testing.T) {
	const pw = "Pa55word-xyz"
	tests := []string{
		"rabbitmq:127.0.0.1",                     // no '/'
		"rabbitmq:/key",                          // no host
		"rabbitmq:127.0.0.1/",                    // empty key with the default exchange
		"rabbitmq:127.0.0.1/?",                   // same
		"rabbitmq:127.0.0.1:0/k",                 // port 0
		"rabbitmq:127.0.0.1:65536/k",             // port too big
		"rabbitmq:127.0.0.1:+80/k",               // signed port
		"rabbitmq:127.0.0.1:/k",                  // empty port
		"rabbitmq:127.0.0.1:x/k",                 // not a number
		"rabbitmq:::1/k",                         // IPv6 without brackets
		"rabbitmq:[::1/k",                        // unclosed bracket
		"rabbitmq:[nope]/k",                      // not an IPv6 address
		"rabbitmq:[::1]x/k",                      // junk after the bracket
		"rabbitmq:ho st/k",                       // space in host
		"rabbitmq:@h/k",                          // empty user
		"rabbitmq::" + pw + "@h/k",               // empty user with a password
		"rabbitmq:u:" + pw + "%zz@h/k",           // bad escape in password
		"rabbitmq:u:" + pw + "%0A@h/k",           // control character in password
		"rabbitmq:h/k%",                          // bad escape in key
		"rabbitmq:h/k%0a",                        // control character in key
		"rabbitmq:h/" + strings.Repeat("k", 256), // key too long
		"rabbitmq:h/" + strings.Repeat("e", 256) + "?k",
		"rabbitmq:h/k;",                // empty parameter
		"rabbitmq:h/k;vhost",           // no '='
		"rabbitmq:h/k;vhost=",          // empty vhost
		"rabbitmq:h/k;vhost=a;vhost=b", // twice
		"rabbitmq:h/k;heartbeat=-1",
		"rabbitmq:h/k;heartbeat=65536",
		"rabbitmq:h/k;heartbeat=1.5",
		"rabbitmq:h/k;sync=2",
		"rabbitmq:h/k;sync=yes",
		"rabbitmq:h/k;sync_mode=2",
		"rabbitmq:h/k;sync=1;sync_mode=0", // the same parameter twice
		"rabbitmq:h/k;persistent=true",
		"rabbitmq:h/k;format=xml",
		"rabbitmq:h/k;buffer=0",
		"rabbitmq:h/k;buffer=10000001",
		"rabbitmq:h/k;hearbeat=3", // unknown
		// A password with an unescaped '/' cannot parse as intended; the
		// error must not show it.
		"rabbitmq:u:" + pw + "/x@h:badport/k",
		"rabbitmq:u:ab/" + pw + "@h:x/k",
		"rabbitmq:u:" + pw + "@h:99999/k",
	}
	for _, s := range tests {
		t.Run(s, func(t *testing.T) {
			_, err := ParseAddress(mustSocket(t, s))
			if !errors.Is(err, evi.ErrMalformedSocket) {
				t.Fatalf("error %v, want ErrMalformedSocket", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error shows the password: %v", err)
			}
			t.Log(err)
		})
	}
	// Through evi.SubscribeEvent, as a --event flag does at start-up.
	ev, _ := newEvents(t, Options{})
	_, err := ev.SubscribeEvent("E_TEST", "rabbitmq:u:"+pw+"@h:99999/k")
	errIs(t, err, evi.ErrMalformedSocket)
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("error shows the password: %v", err)
	}
	err = ev.SubscribeFlags([]string{"E_TEST=rabbitmqs:u:" + pw + "@h/k;sync=maybe"})
	errIs(t, err, evi.ErrMalformedSocket)
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestAddressNeverShowsPassword(t *testing.T) {
	const pw = "Pa55word-xyz"
	a, err := ParseAddress(mustSocket(t, "rabbitmq:bob:"+pw+"@h/k;vhost=v"))
	noErr(t, err)
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("socket", "addr", a, "ptr", &a)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("socket", "addr", a, "ptr", &a)
	for _, s := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s %q %x", a, a, a, a, a, a),
		fmt.Sprintf("%v %+v %#v", &a, &a, &a), fmt.Sprintf("%+v", []Address{a}), a.LogValue().String(), text.String(), js.String()} {
		if strings.Contains(s, pw) {
			t.Fatalf("%q shows the password", s)
		}
	}
	if !strings.Contains(text.String(), "bob:xxxxx@h") || !strings.Contains(js.String(), "bob:xxxxx@h") {
		t.Fatalf("slog does not show the redacted socket:\n%s%s", &text, &js)
	}
	if want := "rabbitmq:bob:xxxxx@h:5672/k;vhost=v"; a.String() != want {
		t.Fatalf("String %q, want %q", a.String(), want)
	}
}

// FuzzParseAddress: the parser never panics; an accepted address has a host,
// a port in range and a target; an error wraps ErrMalformedSocket and never
// shows what evi hides as the password.
//
//	go test -run '^$' -fuzz FuzzParseAddress -fuzztime 1m ./eventbus/rabbitmq/
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1/sipmsg", "guest:guest@127.0.0.1:5672/ex?key", "u:p:a@s?s;w%2Fd@h/k",
		"[::1]:5680/k;vhost=%2F;heartbeat=3;sync=1;format=json;persistent=1;buffer=9",
		"h/k%", "u:secretpass/x@h:bad/k", "@/", ";;?", "[", "h:/", "%", "u:longsecret@h:x/k", "u:long/secret@h:1/k;x=1",
	} {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, tls bool, addr string) {
		scheme := Scheme
		if tls {
			scheme = SchemeTLS
		}
		sock, err := evi.ParseSocket(scheme + ":" + addr)
		if err != nil {
			return
		}
		a, err := ParseAddress(sock)
		if err != nil {
			if !errors.Is(err, evi.ErrMalformedSocket) {
				t.Fatalf("error %v does not wrap ErrMalformedSocket", err)
			}
			// What evi's redaction hides (between the first ':' and the
			// last '@') must not show, when it is long enough to tell.
			if at := strings.LastIndexByte(addr, '@'); at >= 0 {
				if c := strings.IndexByte(addr[:at], ':'); c >= 0 {
					hidden, shown := addr[c+1:at], addr[:c+1]+addr[at:]
					if len(hidden) >= 8 && strings.Contains(err.Error(), hidden) && !strings.Contains(shown, hidden) {
						t.Fatalf("error %q shows %q", err, hidden)
					}
				}
			}
			return
		}
		if a.Host == "" || a.Port < 1 || a.Port > 65535 || (a.RoutingKey == "" && a.Exchange == "") || a.Vhost == "" {
			t.Fatalf("accepted an incomplete address %#v from %q", a, addr)
		}
		if a.TLS != tls {
			t.Fatalf("TLS %v for scheme %s", a.TLS, scheme)
		}
		fields := strings.Join([]string{a.User, a.Host, a.Exchange, a.RoutingKey, a.Vhost}, "\x00")
		if len(a.Password) >= 8 && strings.Contains(a.String(), a.Password) && !strings.Contains(fields, a.Password) {
			t.Fatalf("String %q shows the password", a.String())
		}
	})
}

func TestEncodeJSON(t *testing.T) {
	ev, err := evi.NewEvent("E_SIP_MESSAGE", time.Time{},
		evi.String("user", "alice"), evi.String("msg", "hi, \"bob\"\r\n\t\\ <&> \x00\x7f é \u2028 \xff"))
	noErr(t, err)
	got := string(EncodeJSON(ev))
	want := `{"jsonrpc":"2.0","method":"E_SIP_MESSAGE","params":{"user":"alice","msg":"hi, \"bob\"\r\n\t\\ <&> \u0000\u007f é \u2028 \ufffd"}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	empty, _ := evi.NewEvent("E_EMPTY", time.Time{})
	if got := string(EncodeJSON(empty)); got != `{"jsonrpc":"2.0","method":"E_EMPTY","params":{}}` {
		t.Fatalf("got %s", got)
	}
}
