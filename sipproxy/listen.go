package sipproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadListen is returned for a malformed listen or destination string.
var ErrBadListen = errors.New("sipproxy: bad socket")

// Listen is one listening socket: "udp:127.0.0.1:5060".
type Listen struct {
	Network string // udp, tcp, tls, ws
	Host    string // an IP address
	Port    int
}

// Addr returns "host:port".
func (l Listen) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

func (l Listen) String() string { return l.Network + ":" + l.Addr() }

var defaultPorts = map[string]int{"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 8080}

// ParseListen reads "proto:host:port" (port optional; proto one of udp, tcp,
// tls, ws). The host must be an IP address, e.g. "udp:127.0.0.1:5060" or
// "tcp:[::1]:5060".
func ParseListen(s string) (Listen, error) {
	proto, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Listen{}, fmt.Errorf("%w %q: want proto:host[:port], e.g. udp:127.0.0.1:5060", ErrBadListen, s)
	}
	proto = strings.ToLower(proto)
	def, known := defaultPorts[proto]
	if !known {
		return Listen{}, fmt.Errorf("%w %q: unknown protocol %q (udp, tcp, tls, ws)", ErrBadListen, s, proto)
	}
	host, port, err := splitHostPort(rest, def)
	if err != nil {
		return Listen{}, fmt.Errorf("%w %q: %v", ErrBadListen, s, err)
	}
	if net.ParseIP(host) == nil {
		return Listen{}, fmt.Errorf("%w %q: host %q is not an IP address", ErrBadListen, s, host)
	}
	return Listen{Network: proto, Host: host, Port: port}, nil
}

// splitHostPort splits "host[:port]" where host may be a bracketed IPv6
// address; a bracketed host must be a non-empty IP address.
func splitHostPort(s string, defPort int) (string, int, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing ] in IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if host == "" {
			return "", 0, errors.New("empty host in brackets")
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("%q in brackets is not an IP address", host)
		}
		if rest == "" {
			return host, defPort, nil
		}
		if rest[0] != ':' {
			return "", 0, errors.New("junk after ]")
		}
		p, err := parsePort(rest[1:])
		return host, p, err
	}
	if strings.Count(s, ":") > 1 {
		return "", 0, errors.New("IPv6 address must be in brackets")
	}
	host, ps, hasPort := strings.Cut(s, ":")
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	if !hasPort {
		return host, defPort, nil
	}
	p, err := parsePort(ps)
	return host, p, err
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return p, nil
}

// Target is a relay destination: "host:port", optionally prefixed with a
// transport ("tcp:host:port") or written as a SIP URI ("sip:host:port;transport=tcp").
type Target struct {
	Transport string // UDP, TCP, TLS, WS (upper case, as sipgo uses)
	Host      string
	Port      int
}

// Addr returns "host:port".
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t Target) String() string { return strings.ToLower(t.Transport) + ":" + t.Addr() }

// ParseTarget reads a destination. The default transport is UDP; a sips: URI
// means TLS. The default port is the transport's (RFC 3261 §19.1.2): 5061 for
// TLS, 5060 for the others. In a sip: or sips: URI a user part ("bob@") is
// ignored. The host must be an IP address (IPv6 in brackets) or a DNS name.
func ParseTarget(s string) (Target, error) {
	orig := s
	scheme := ""
	if p, rest, ok := strings.Cut(s, ":"); ok && (strings.EqualFold(p, "sip") || strings.EqualFold(p, "sips")) {
		scheme, s = strings.ToLower(p), rest
	}
	tp := "UDP"
	if scheme == "sips" {
		tp = "TLS"
	}
	if scheme != "" {
		// Only the host part matters: drop "user[:password]@".
		if user, rest, ok := strings.Cut(s, "@"); ok {
			if user == "" {
				return Target{}, fmt.Errorf("%w %q: empty user part", ErrBadListen, orig)
			}
			s = rest
		}
	} else if p, rest, ok := strings.Cut(s, ":"); ok {
		if _, known := defaultPorts[strings.ToLower(p)]; known {
			tp, s = strings.ToUpper(p), rest
		}
	}
	if base, params, ok := strings.Cut(s, ";"); ok {
		s = base
		for _, kv := range strings.Split(params, ";") {
			if k, v, _ := strings.Cut(kv, "="); strings.EqualFold(k, "transport") {
				tp = strings.ToUpper(v)
			}
		}
	}
	if _, known := defaultPorts[strings.ToLower(tp)]; !known {
		return Target{}, fmt.Errorf("%w %q: unknown transport %q", ErrBadListen, orig, tp)
	}
	if scheme == "sips" {
		// sips asks for TLS on every hop (RFC 3261 §26.2.2); ;transport=tcp
		// is TLS over TCP (RFC 5630), and there is no TLS over UDP or WS here.
		switch tp {
		case "TCP", "TLS":
			tp = "TLS"
		default:
			return Target{}, fmt.Errorf("%w %q: a sips: URI needs TLS, not transport %q", ErrBadListen, orig, tp)
		}
	}
	defPort := 5060
	if tp == "TLS" {
		defPort = 5061
	}
	host, port, err := splitHostPort(s, defPort)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: %v", ErrBadListen, orig, err)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return Target{}, fmt.Errorf("%w %q: bad host %q: neither an IP address nor a DNS name", ErrBadListen, orig, host)
	}
	if port == 0 {
		return Target{}, fmt.Errorf("%w %q: port 0", ErrBadListen, orig)
	}
	return Target{Transport: tp, Host: host, Port: port}, nil
}

// isHostname tells whether s is a DNS name: dot-separated labels of letters,
// digits and '-' (an optional final dot aside), no label empty, over 63 bytes,
// or beginning or ending with '-'. The last label may not be all digits, so
// that a malformed IPv4 address ("256.1.1.1", "10.0.0") is not taken for a
// name (RFC 3261 §25.1 wants it to begin with a letter).
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	top := labels[len(labels)-1]
	return strings.Trim(top, "0123456789") != ""
}
