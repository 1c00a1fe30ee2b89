package evi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

var (
	// ErrMalformedSocket reports a socket that cannot be parsed, or whose
	// address its transport refuses.
	ErrMalformedSocket = errors.New("evi: malformed socket")
	// ErrUnknownScheme reports a socket whose scheme has no registered
	// transport.
	ErrUnknownScheme = errors.New("evi: unknown transport scheme")
)

// Socket says where a subscriber's events go: "scheme:address", as in
// OpenSIPS's subscribe_event ("udp:127.0.0.1:8888",
// "rabbitmq:user:pass@host/key"). The scheme picks the transport; the address
// is the transport's business.
//
// The address may hold credentials. String, LogValue and every error of this
// package show the socket with the password replaced by "xxxxx"; only
// Address returns it in clear, for the transport.
type Socket struct {
	scheme, address string
}

// ParseSocket splits a socket into scheme and address. The scheme is a letter
// followed by letters, digits, '+', '-' or '.'; it is case-insensitive and
// returned in lower case. The address must not be empty.
func ParseSocket(s string) (Socket, error) {
	scheme, addr, ok := strings.Cut(s, ":")
	if !ok || !validScheme(scheme) || addr == "" {
		return Socket{}, fmt.Errorf("%w %q: want scheme:address", ErrMalformedSocket, Redact(s))
	}
	return Socket{scheme: strings.ToLower(scheme), address: addr}, nil
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lower case for letters
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.'):
		default:
			return false
		}
	}
	return true
}

// Scheme returns the lower-case scheme.
func (s Socket) Scheme() string { return s.scheme }

// Address returns what follows "scheme:", credentials included, in clear.
// Never log it or put it in an error; use String.
func (s Socket) Address() string { return s.address }

// String returns the socket with any password redacted.
func (s Socket) String() string {
	if s.scheme == "" {
		return ""
	}
	return s.scheme + ":" + redactAddress(s.address)
}

// LogValue makes slog print the redacted socket.
func (s Socket) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Redact hides the credentials of a string that may hold a socket, for
// errors and logs about input that did not parse. Unlike Socket.String, it
// cannot tell the user from the password, so it keeps the text up to the
// first ':' and from the last '@' and replaces what lies between by "xxxxx":
// "rabbitmq:user:pass@host/key" becomes "rabbitmq:xxxxx@host/key". A string
// without '@', or without ':' before it, is returned unchanged.
func Redact(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(s[:at], ':')
	if colon < 0 {
		return s
	}
	return s[:colon+1] + "xxxxx" + s[at:]
}

// redactAddress hides the password of an address "user:password@rest"; the
// user part ends at the last '@', so a password containing '@' is hidden too.
func redactAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	user, _, hasPass := strings.Cut(addr[:at], ":")
	if !hasPass {
		return addr
	}
	return user + ":xxxxx" + addr[at:]
}

// ParseEventFlag parses the value of the repeatable start-up flag
// --event NAME=SOCKET, for example "E_SIP_MESSAGE=udp:127.0.0.1:8888". It
// checks the syntax only: Events.SubscribeEvent checks that the event is
// declared and the scheme registered.
func ParseEventFlag(v string) (name string, socket Socket, err error) {
	name, sock, ok := strings.Cut(v, "=")
	if !ok {
		return "", Socket{}, fmt.Errorf("evi: --event %q: want NAME=SOCKET: %w", Redact(v), ErrMalformedSocket)
	}
	if err := validEventName(name); err != nil {
		return "", Socket{}, fmt.Errorf("evi: --event %q: %w", Redact(v), err)
	}
	socket, err = ParseSocket(sock)
	if err != nil {
		return "", Socket{}, fmt.Errorf("evi: --event %s: %w", name, err)
	}
	return name, socket, nil
}

// GoString makes %#v print the redacted socket too.
func (s Socket) GoString() string { return fmt.Sprintf("evi.Socket(%q)", s.String()) }
