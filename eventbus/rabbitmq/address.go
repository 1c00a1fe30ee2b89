package rabbitmq

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// Schemes and default ports.
const (
	Scheme         = "rabbitmq"  // plain AMQP 0-9-1
	SchemeTLS      = "rabbitmqs" // AMQP over TLS
	DefaultPort    = 5672
	DefaultTLSPort = 5671
	DefaultUser    = "guest"
	DefaultPass    = "guest"
	DefaultVhost   = "/"
	maxShortStr    = 255 // AMQP shortstr: exchange, routing key, vhost
	maxBuffer      = 10_000_000
)

// Format is the body of the published message.
type Format int

const (
	// FormatGrammar is the event grammar of OpenSIPS's event interface,
	// byte for byte evi.Encode (Event.Bytes). Content type text/plain.
	FormatGrammar Format = iota
	// FormatJSON is a JSON-RPC 2.0 notification, as OpenSIPS 3 writes events:
	// {"jsonrpc":"2.0","method":NAME,"params":{NAME:VALUE,...}}. Content
	// type application/json.
	FormatJSON
)

func (f Format) String() string {
	if f == FormatJSON {
		return "json"
	}
	return "grammar"
}

// Address is a parsed rabbitmq socket address:
//
//	rabbitmq:[user[:password]@]host[:port]/[exchange?]routing_key[;name=value]...
//	rabbitmqs:...   (TLS; default port 5671)
//
// as OpenSIPS's event_rabbitmq writes it, plus parameters after the routing
// key. The parameters override the Options of the Factory for this socket:
//
//	vhost=NAME        virtual host (default "/"; OpenSIPS supports only "/")
//	heartbeat=SECONDS AMQP heartbeat requested; 0 = none requested
//	sync=0|1          sync_mode (also spelt sync_mode=0|1): 1 = RaiseEvent
//	                  waits for the publisher confirm
//	format=grammar|json
//	persistent=0|1    delivery mode 2 (persistent) instead of 1
//	buffer=N          events held while the broker is away or unconfirmed
//
// The user info ends at the last '@' before the first '/'; the user ends at
// the first ':'. So a password may contain ':' and '@' but not '/': write
// '/' as %2F. %XX escapes are decoded in the user, the password, the
// exchange, the routing key and the vhost ('%' itself is %25). The exchange
// ends at the first '?'; the routing key ends at the first ';'. Defaults:
// user and password "guest", port 5672 (5671 for rabbitmqs), exchange ""
// (the default exchange, where the routing key is a queue name).
//
// The password is never shown: String, GoString and LogValue write "xxxxx".
type Address struct {
	TLS        bool
	User       string
	Password   string
	Host       string
	Port       int
	Vhost      string
	Exchange   string
	RoutingKey string
	Params     Params
}

// Params are the socket parameters; nil means "not in the socket": the
// Factory's Options apply.
type Params struct {
	Heartbeat  *time.Duration
	Sync       *bool
	Format     *Format
	Persistent *bool
	Buffer     *int
}

// ParseAddress parses a socket of the rabbitmq or rabbitmqs scheme. Errors
// wrap evi.ErrMalformedSocket and never contain the password.
func ParseAddress(s evi.Socket) (Address, error) {
	var tls bool
	switch s.Scheme() {
	case Scheme:
	case SchemeTLS:
		tls = true
	default:
		return Address{}, fmt.Errorf("%w %s: scheme is not %s or %s", evi.ErrMalformedSocket, s, Scheme, SchemeTLS)
	}
	a, err := parseAddress(tls, s.Address())
	if err != nil {
		return Address{}, fmt.Errorf("%w %s: %s", evi.ErrMalformedSocket, s, err)
	}
	return a, nil
}

// syntaxError is a reason for a malformed socket. It quotes parts of the
// address only when the address holds no '@' (so no password anywhere).
type syntaxError string

func (e syntaxError) Error() string { return string(e) }

func parseAddress(tls bool, addr string) (Address, error) {
	// show quotes a fragment unless the address may hold a password.
	secret := strings.Contains(addr, "@")
	show := func(frag string) string {
		if secret {
			return ""
		}
		return " " + strconv.Quote(frag)
	}
	bad := func(format string, args ...any) (Address, error) {
		return Address{}, syntaxError(fmt.Sprintf(format, args...))
	}

	a := Address{TLS: tls, User: DefaultUser, Password: DefaultPass, Port: DefaultPort, Vhost: DefaultVhost}
	if tls {
		a.Port = DefaultTLSPort
	}
	slash := strings.IndexByte(addr, '/')
	if slash < 0 {
		return bad("want [user[:password]@]host[:port]/[exchange?]routing_key")
	}
	authority, rest := addr[:slash], addr[slash+1:]

	// [user[:password]@]host[:port]
	hostport := authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo := authority[:at]
		hostport = authority[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if a.User, err = unescape(user); err != nil || a.User == "" {
			return bad("empty or badly escaped user before '@'")
		}
		if hasPass {
			if a.Password, err = unescape(pass); err != nil {
				return bad("badly escaped password (write '%%' as %%25, '/' as %%2F)")
			}
		}
		if strings.ContainsFunc(a.User, isCtl) || strings.ContainsFunc(a.Password, isCtl) {
			return bad("control character in user or password")
		}
	}
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return bad("%v%s", err, show(hostport))
	}
	a.Host = host
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || port[0] == '+' || port[0] == '-' {
			return bad("port%s is not a number 1-65535", show(port))
		}
		a.Port = p
	}

	// [exchange?]routing_key[;params]
	path, params, hasParams := strings.Cut(rest, ";")
	exchange, key, hasExchange := strings.Cut(path, "?")
	if !hasExchange {
		exchange, key = "", path
	}
	if a.Exchange, err = unescape(exchange); err != nil {
		return bad("badly escaped exchange%s", show(exchange))
	}
	if a.RoutingKey, err = unescape(key); err != nil {
		return bad("badly escaped routing key%s", show(key))
	}
	if err := shortStr("exchange", a.Exchange); err != nil {
		return Address{}, err
	}
	if err := shortStr("routing key", a.RoutingKey); err != nil {
		return Address{}, err
	}
	if a.RoutingKey == "" && a.Exchange == "" {
		return bad("empty routing key: with the default exchange it names the queue")
	}
	if hasParams {
		if err := a.parseParams(params, show); err != nil {
			return Address{}, err
		}
	}
	return a, nil
}

func (a *Address) parseParams(params string, show func(string) string) error {
	seen := map[string]bool{}
	for p := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(p, "=")
		name = strings.ToLower(name)
		if name == "sync_mode" { // OpenSIPS's parameter name
			name = "sync"
		}
		if !ok || name == "" {
			return syntaxError(fmt.Sprintf("parameter%s: want ;name=value", show(p)))
		}
		if seen[name] {
			return syntaxError(fmt.Sprintf("parameter %s given twice", safeName(name)))
		}
		seen[name] = true
		switch name {
		case "vhost":
			v, err := unescape(value)
			if err != nil || v == "" {
				return syntaxError("vhost: empty or badly escaped")
			}
			if err := shortStr("vhost", v); err != nil {
				return err
			}
			a.Vhost = v
		case "heartbeat":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 65535 || value[0] == '+' || value[0] == '-' {
				return syntaxError(fmt.Sprintf("heartbeat%s: want seconds 0-65535 (0 = none requested)", show(value)))
			}
			d := time.Duration(n) * time.Second
			a.Params.Heartbeat = &d
		case "sync", "persistent":
			if value != "0" && value != "1" {
				return syntaxError(fmt.Sprintf("%s%s: want 0 or 1", name, show(value)))
			}
			b := value == "1"
			if name == "sync" {
				a.Params.Sync = &b
			} else {
				a.Params.Persistent = &b
			}
		case "format":
			var f Format
			switch strings.ToLower(value) {
			case "grammar":
				f = FormatGrammar
			case "json":
				f = FormatJSON
			default:
				return syntaxError(fmt.Sprintf("format%s: want grammar or json", show(value)))
			}
			a.Params.Format = &f
		case "buffer":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > maxBuffer || value[0] == '+' {
				return syntaxError(fmt.Sprintf("buffer%s: want 1-%d events", show(value), maxBuffer))
			}
			a.Params.Buffer = &n
		default:
			return syntaxError(fmt.Sprintf("unknown parameter %s (want vhost, heartbeat, sync or sync_mode, format, persistent, buffer)", safeName(name)))
		}
	}
	return nil
}

// safeName quotes a parameter name if it looks like one (letters, digits,
// '_'), so that text from a misplaced password never shows.
func safeName(name string) string {
	if len(name) > 20 {
		return "(name too long)"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "(bad name)"
		}
	}
	return strconv.Quote(name)
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(hp string) (host, port string, err error) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", syntaxError("unclosed '[' in host")
		}
		host, rest := hp[1:end], hp[end+1:]
		ip := host
		if i := strings.IndexByte(ip, '%'); i >= 0 {
			ip = ip[:i]
		}
		if net.ParseIP(ip) == nil || !strings.Contains(host, ":") {
			return "", "", syntaxError("bad IPv6 address in brackets")
		}
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", "", syntaxError("want [ipv6]:port")
		}
		return host, rest[1:], nil
	}
	host, port, hasPort := strings.Cut(hp, ":")
	if hasPort && port == "" {
		return "", "", syntaxError("empty port after ':'")
	}
	if host == "" {
		return "", "", syntaxError("empty host")
	}
	if len(host) > 253 {
		return "", "", syntaxError("host name too long")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", syntaxError("bad character in host (an IPv6 address goes in brackets)")
		}
	}
	return host, port, nil
}

func shortStr(what, v string) error {
	if len(v) > maxShortStr {
		return syntaxError(fmt.Sprintf("%s longer than %d bytes", what, maxShortStr))
	}
	if strings.ContainsFunc(v, isCtl) {
		return syntaxError(fmt.Sprintf("control character in %s", what))
	}
	return nil
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

// unescape decodes %XX escapes; a '%' not followed by two hex digits is an
// error.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", syntaxError("bad % escape")
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// escape writes s with '%', the separators and control characters escaped,
// so that String's output parses back to the same address.
func escape(s, special string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c < 0x20 || c == 0x7f || strings.IndexByte(special, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// String returns the address as a socket, with every field explicit and the
// password replaced by "xxxxx".
func (a Address) String() string {
	scheme := Scheme
	if a.TLS {
		scheme = SchemeTLS
	}
	host := a.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := fmt.Sprintf("%s:%s:xxxxx@%s:%d/", scheme, escape(a.User, ":@/;?"), host, a.Port)
	if a.Exchange != "" {
		s += escape(a.Exchange, "?;") + "?"
	}
	s += escape(a.RoutingKey, ";")
	if a.Vhost != DefaultVhost {
		s += ";vhost=" + escape(a.Vhost, ";")
	}
	return s
}

// GoString makes %#v print the redacted form too.
func (a Address) GoString() string { return fmt.Sprintf("rabbitmq.Address(%q)", a.String()) }

// LogValue makes slog print the redacted form.
func (a Address) LogValue() slog.Value { return slog.StringValue(a.String()) }

// hostPort is the dial address.
func (a Address) hostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }
