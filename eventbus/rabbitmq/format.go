package rabbitmq

import (
	"unicode/utf8"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// Content types of the two formats.
const (
	ContentTypeGrammar = "text/plain"
	ContentTypeJSON    = "application/json"
)

// body returns the message body of ev in format f. The grammar is the
// event's own encoding, shared, not copied.
func body(f Format, ev *evi.Event) []byte {
	if f == FormatJSON {
		return EncodeJSON(ev)
	}
	return ev.Bytes()
}

// EncodeJSON returns ev as a JSON-RPC 2.0 notification, the form OpenSIPS 3
// gives events:
//
//	{"jsonrpc":"2.0","method":"E_SIP_MESSAGE","params":{"user":"alice","msg":"hi"}}
//
// Attributes keep their order; an attribute name raised twice appears twice
// (JSON parsers usually keep the last). Invalid UTF-8 is replaced by U+FFFD,
// as encoding/json does.
func EncodeJSON(ev *evi.Event) []byte {
	n := 48 + len(ev.Name())
	for i := range ev.Len() {
		a := ev.Attr(i)
		n += len(a.Name) + len(a.Value) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, `{"jsonrpc":"2.0","method":`...)
	b = appendJSONString(b, ev.Name())
	b = append(b, `,"params":{`...)
	for i := range ev.Len() {
		a := ev.Attr(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a.Name)
		b = append(b, ':')
		b = appendJSONString(b, a.Value)
	}
	return append(b, "}}"...)
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029': // valid JSON, but not valid JavaScript
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&15])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
