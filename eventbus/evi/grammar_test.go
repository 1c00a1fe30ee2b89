package evi

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Golden encodings. These bytes are the wire format of every transport that
// uses Encode (udp, and the RabbitMQ transport): change them only on purpose.
var golden = []struct {
	name  string
	event string
	attrs []Attr
	want  string
}{
	{"seed example", "E_SIP_MESSAGE", []Attr{{"user", "alice"}, {"msg", "hello"}}, "E_SIP_MESSAGE\nuser::alice\nmsg::hello\n"},
	{"pike", "E_PIKE_BLOCKED", []Attr{{"ip", "192.168.2.11"}}, "E_PIKE_BLOCKED\nip::192.168.2.11\n"},
	{"no attributes", "E_CORE_START", nil, "E_CORE_START\n"},
	{"empty value", "E", []Attr{{"k", ""}}, "E\nk::\n"},
	{"comma quoted", "E", []Attr{{"k", "a,b"}}, "E\nk::\"a,b\"\n"},
	{"LF quoted", "E_SIP_MESSAGE", []Attr{{"msg", "line1\nline2"}}, "E_SIP_MESSAGE\nmsg::\"line1\nline2\"\n"},
	{"CRLF quoted", "E", []Attr{{"k", "a\r\nb"}}, "E\nk::\"a\r\nb\"\n"},
	{"quote escaped", "E", []Attr{{"k", `say "hi"`}}, "E\nk::\"say \\\"hi\\\"\"\n"},
	{"only a quote", "E", []Attr{{"k", `"`}}, "E\nk::\"\\\"\"\n"},
	{"backslash unquoted is literal", "E", []Attr{{"k", `C:\tmp\`}}, "E\nk::C:\\tmp\\\n"},
	{"backslash in quoted escaped", "E", []Attr{{"k", `a\b,c`}}, "E\nk::\"a\\\\b,c\"\n"},
	{"colons in value", "E", []Attr{{"uri", "sip:alice@example.com:5060"}}, "E\nuri::sip:alice@example.com:5060\n"},
	{"spaces and UTF-8", "E", []Attr{{"who", " Zoë  "}}, "E\nwho:: Zoë  \n"},
	{"order kept", "E", []Attr{{"b", "2"}, {"a", "1"}, {"b", "3"}}, "E\nb::2\na::1\nb::3\n"},
	{"event name with colon", "core:tkv", []Attr{{"type", "8000"}}, "core:tkv\ntype::8000\n"},
}

func TestEncodeGolden(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.event, tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode = %q, want %q", got, tc.want)
			}
			if n := EncodedLen(tc.event, tc.attrs); n != len(tc.want) {
				t.Fatalf("EncodedLen = %d, want %d", n, len(tc.want))
			}
			app, err := AppendEncode([]byte("prefix"), tc.event, tc.attrs)
			if err != nil || string(app) != "prefix"+tc.want {
				t.Fatalf("AppendEncode = %q, %v", app, err)
			}
			name, attrs, err := Decode(got)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if name != tc.event || !reflect.DeepEqual(attrs, tc.attrs) {
				t.Fatalf("Decode = %q %q, want %q %q", name, attrs, tc.event, tc.attrs)
			}
		})
	}
}

func TestEncodeRefusesBadNames(t *testing.T) {
	for _, tc := range []struct {
		event string
		attrs []Attr
		want  error
	}{
		{"", nil, ErrInvalidName},
		{"E\nX", nil, ErrInvalidName},
		{"E,X", nil, ErrInvalidName},
		{`E"X`, nil, ErrInvalidName},
		{"E\rX", nil, ErrInvalidName},
		{"E", []Attr{{"", "v"}}, ErrInvalidAttrName},
		{"E", []Attr{{"a:b", "v"}}, ErrInvalidAttrName},
		{"E", []Attr{{"a\nb", "v"}}, ErrInvalidAttrName},
		{"E", []Attr{{"ok", "v"}, {`a"`, "v"}}, ErrInvalidAttrName},
	} {
		_, err := Encode(tc.event, tc.attrs)
		if !errors.Is(err, tc.want) {
			t.Errorf("Encode(%q, %q): %v, want %v", tc.event, tc.attrs, err, tc.want)
		}
		dst, err := AppendEncode([]byte("x"), tc.event, tc.attrs)
		if !errors.Is(err, tc.want) || string(dst) != "x" {
			t.Errorf("AppendEncode(%q, %q): %q, %v", tc.event, tc.attrs, dst, err)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in    string
		name  string
		attrs []Attr
	}{
		// What OpenSIPS writes for a value with a backslash: kept literally.
		{"E\nk::\"a\\b\"\n", "E", []Attr{{"k", `a\b`}}},
		// Quotes where none are needed.
		{"E\nk::\"plain\"\n", "E", []Attr{{"k", "plain"}}},
		{"E\nk::a::b\n", "E", []Attr{{"k", "a::b"}}},
		{"E\n", "E", nil},
	} {
		name, attrs, err := Decode([]byte(tc.in))
		if err != nil || name != tc.name || !reflect.DeepEqual(attrs, tc.attrs) {
			t.Errorf("Decode(%q) = %q %q %v", tc.in, name, attrs, err)
		}
	}
	for _, in := range []string{
		"",
		"E",                 // no line end
		"\nk::v\n",          // empty name
		"E\nk=v\n",          // no "::"
		"E\nk\n::v\n",       // line end before "::"
		"E\n::v\n",          // empty argument name
		"E\nk::v",           // missing final line end
		"E\nk::a,b\n",       // unquoted comma
		"E\nk::a\"b\n",      // unquoted quote
		"E\nk::a\rb\n",      // unquoted CR
		"E\nk::\"abc\n",     // unterminated
		"E\nk::\"abc\"x\n",  // text after the closing quote
		"E\nk::\"abc\\\"\n", // escaped closing quote: unterminated
		"E\nk::\"abc\"",     // no line end after the quote
		"E\"\nk::v\n",       // bad event name
		"E\na:b::v\n",       // ':' in the name
	} {
		if _, _, err := Decode([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%q): %v, want ErrMalformed", in, err)
		}
	}
}

func TestAttrHelpers(t *testing.T) {
	if a := Int("code", -404); a != (Attr{"code", "-404"}) {
		t.Fatal(a)
	}
	if a := String("k", "v"); a != (Attr{"k", "v"}) {
		t.Fatal(a)
	}
}

// FuzzEncode: whatever Encode accepts, Decode gives back exactly, and the
// output follows the grammar; whatever it refuses has a bad name.
func FuzzEncode(f *testing.F) {
	for _, g := range golden {
		var n1, v1, n2, v2 string
		if len(g.attrs) > 0 {
			n1, v1 = g.attrs[0].Name, g.attrs[0].Value
		}
		if len(g.attrs) > 1 {
			n2, v2 = g.attrs[1].Name, g.attrs[1].Value
		}
		f.Add(g.event, n1, v1, n2, v2)
	}
	f.Add("E", "k", `\"`, "k2", "\\\n\"")
	f.Fuzz(func(t *testing.T, event, n1, v1, n2, v2 string) {
		attrs := []Attr{{n1, v1}, {n2, v2}}
		b, err := Encode(event, attrs)
		if err != nil {
			if ValidateEventName(event) == nil && ValidateAttrName(n1) == nil && ValidateAttrName(n2) == nil {
				t.Fatalf("Encode refused valid names: %v", err)
			}
			return
		}
		if len(b) != EncodedLen(event, attrs) {
			t.Fatalf("EncodedLen %d, encoded %d", EncodedLen(event, attrs), len(b))
		}
		if !bytes.HasPrefix(b, []byte(event+"\n")) || b[len(b)-1] != '\n' {
			t.Fatalf("bad framing %q", b)
		}
		name, got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(...)) = %v for %q", err, b)
		}
		if name != event || !reflect.DeepEqual(got, attrs) {
			t.Fatalf("round trip: %q %q, want %q %q", name, got, event, attrs)
		}
	})
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to an event
// that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, g := range golden {
		f.Add([]byte(g.want))
	}
	f.Add([]byte("E\nk::\"a\\b\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, attrs, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(name, attrs)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		name2, attrs2, err := Decode(b)
		if err != nil || name2 != name || !reflect.DeepEqual(attrs2, attrs) {
			t.Fatalf("re-encoding %q changed it: %q %q %v", b, name2, attrs2, err)
		}
		if strings.Count(string(data), "\n") < len(attrs)+1 {
			t.Fatalf("more arguments than lines in %q", data)
		}
	})
}
