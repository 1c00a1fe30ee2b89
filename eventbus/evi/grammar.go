package evi

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The event grammar of the OpenSIPS event interface, as its datagram and
// RabbitMQ transports write it:
//
//	event          = event_name (argument '\n')*
//	event_name     = non-quoted_string '\n'
//	argument       = arg_name '::' arg_value
//	arg_value      = non-quoted_string | '"' string '"'
//	non-quoted_string = string - {',', '"', '\n', '\r'}
//
// For example:
//
//	E_SIP_MESSAGE
//	user::alice
//	msg::"hello, world"
//
// Encoding rules, fixed here because other transports reuse Encode byte for
// byte:
//
//   - A value is written as is unless it contains ',', '"', CR or LF; then it
//     is enclosed in double quotes.
//   - Inside quotes, '"' is written '\"' (as OpenSIPS does) and '\' is
//     written '\\'. OpenSIPS leaves '\' alone, which makes a value ending in
//     '\' or containing '\"' ambiguous; escaping it too is the safe choice.
//     Output is identical to OpenSIPS for every value without a backslash,
//     and an unquoted value is never escaped (a backslash there is literal).
//   - An empty value is written as nothing: "name::".
//   - Every argument has a name. A name must be non-empty and contain none of
//     ':', ',', '"', CR, LF (so that the first "::" of a line always ends the
//     name). An event name must be non-empty and contain none of ',', '"',
//     CR, LF.
//   - Every line, the last included, ends with a single '\n'; there is no
//     trailing empty line and no NUL terminator.
//
// The grammar sets no size limit; Events refuses events larger than its
// maximum size (DefaultMaxSize unless configured).

// DefaultMaxSize is the largest encoded event Events accepts by default, in
// bytes: the datagram limit of OpenSIPS's event interface.
const DefaultMaxSize = 16384

var (
	// ErrInvalidName reports an event name the grammar cannot carry.
	ErrInvalidName = errors.New("evi: invalid event name")
	// ErrInvalidAttrName reports an attribute name the grammar cannot carry.
	ErrInvalidAttrName = errors.New("evi: invalid attribute name")
	// ErrMalformed is returned by Decode for input that does not follow the
	// grammar.
	ErrMalformed = errors.New("evi: malformed event")
)

// Attr is one named value of an event. Events carry an ordered list of them.
type Attr struct {
	Name, Value string
}

// String returns an attribute with a string value.
func String(name, value string) Attr { return Attr{Name: name, Value: value} }

// Int returns an attribute with a decimal integer value.
func Int(name string, v int64) Attr { return Attr{Name: name, Value: strconv.FormatInt(v, 10)} }

// ValidateEventName reports whether name can be the first line of an event.
func ValidateEventName(name string) error {
	if name == "" || strings.ContainsAny(name, ",\"\r\n") {
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	}
	return nil
}

// ValidateAttrName reports whether name can name an argument.
func ValidateAttrName(name string) error {
	if name == "" || strings.ContainsAny(name, ":,\"\r\n") {
		return fmt.Errorf("%w %q", ErrInvalidAttrName, name)
	}
	return nil
}

func needsQuotes(v string) bool { return strings.ContainsAny(v, ",\"\r\n") }

// EncodedLen returns the length of the encoding of a valid event.
func EncodedLen(name string, attrs []Attr) int {
	n := len(name) + 1
	for _, a := range attrs {
		n += len(a.Name) + 2 + len(a.Value) + 1
		if needsQuotes(a.Value) {
			n += 2 + strings.Count(a.Value, `"`) + strings.Count(a.Value, `\`)
		}
	}
	return n
}

// Encode returns the encoding of the event; see the grammar above.
func Encode(name string, attrs []Attr) ([]byte, error) {
	if err := validate(name, attrs); err != nil {
		return nil, err
	}
	return appendEvent(make([]byte, 0, EncodedLen(name, attrs)), name, attrs), nil
}

// AppendEncode appends the encoding of the event to dst.
func AppendEncode(dst []byte, name string, attrs []Attr) ([]byte, error) {
	if err := validate(name, attrs); err != nil {
		return dst, err
	}
	return appendEvent(dst, name, attrs), nil
}

func validate(name string, attrs []Attr) error {
	if err := ValidateEventName(name); err != nil {
		return err
	}
	for _, a := range attrs {
		if err := ValidateAttrName(a.Name); err != nil {
			return fmt.Errorf("event %q: %w", name, err)
		}
	}
	return nil
}

func appendEvent(b []byte, name string, attrs []Attr) []byte {
	b = append(b, name...)
	b = append(b, '\n')
	for _, a := range attrs {
		b = append(b, a.Name...)
		b = append(b, "::"...)
		if !needsQuotes(a.Value) {
			b = append(b, a.Value...)
		} else {
			b = append(b, '"')
			for i := 0; i < len(a.Value); i++ {
				if c := a.Value[i]; c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, a.Value[i])
			}
			b = append(b, '"')
		}
		b = append(b, '\n')
	}
	return b
}

// Decode parses an encoded event. It accepts what Encode writes and, in
// quoted values, reads '\"' as '"' and '\\' as '\'; any other backslash is
// kept literally, as OpenSIPS writes it.
func Decode(data []byte) (name string, attrs []Attr, err error) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return "", nil, fmt.Errorf("%w: no event name line", ErrMalformed)
	}
	name = string(data[:nl])
	if err := ValidateEventName(name); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	rest := data[nl+1:]
	for len(rest) > 0 {
		sep := bytes.Index(rest, []byte("::"))
		if end := bytes.IndexByte(rest, '\n'); sep < 0 || (end >= 0 && end < sep) {
			return "", nil, fmt.Errorf("%w: argument %d has no name", ErrMalformed, len(attrs)+1)
		}
		a := Attr{Name: string(rest[:sep])}
		if err := ValidateAttrName(a.Name); err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		rest = rest[sep+2:]
		if len(rest) > 0 && rest[0] == '"' {
			v, n, ok := unquote(rest)
			if !ok || n >= len(rest) || rest[n] != '\n' {
				return "", nil, fmt.Errorf("%w: argument %q: bad quoted value", ErrMalformed, a.Name)
			}
			a.Value, rest = v, rest[n+1:]
		} else {
			end := bytes.IndexByte(rest, '\n')
			if end < 0 {
				return "", nil, fmt.Errorf("%w: argument %q: missing line end", ErrMalformed, a.Name)
			}
			if bytes.ContainsAny(rest[:end], ",\"\r") {
				return "", nil, fmt.Errorf("%w: argument %q: unquoted value with a special character", ErrMalformed, a.Name)
			}
			a.Value, rest = string(rest[:end]), rest[end+1:]
		}
		attrs = append(attrs, a)
	}
	return name, attrs, nil
}

// unquote reads a quoted value at the start of b and returns it and the
// number of bytes read, closing quote included.
func unquote(b []byte) (string, int, bool) {
	var sb strings.Builder
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\'):
			sb.WriteByte(b[i+1])
			i++
		case c == '"':
			return sb.String(), i + 1, true
		default:
			sb.WriteByte(c)
		}
	}
	return "", 0, false
}
