package sipproxy

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// DefaultMaxHeaders is the most header fields a request may carry when
// Config.MaxHeaders is 0.
const DefaultMaxHeaders = 256

// invalid is why a request is refused before any route runs: the status to
// answer and its reason phrase; extra headers go with the answer.
type invalid struct {
	code   int
	reason string
	hdrs   []sip.Header
}

// validateRequest checks what sipgo's parser lets through but RFC 3261
// forbids or a proxy cannot work with (RFC 3261 §16.3 request validation,
// RFC 4475's invalid messages): the protocol version, the mandatory
// headers and that the single-valued ones appear once, the CSeq method,
// the Request-URI, the top Via, control bytes or broken UTF-8 in header
// values, Proxy-Require, and the header count. It returns nil when the
// request may be routed. It allocates only for a refusal.
//
// Max-Forwards may be missing (§16.3 step 3 lets the request pass; the
// relay adds it); Max-Forwards 0 is the route's business (483).
func validateRequest(req *sip.Request, maxHeaders int) *invalid {
	if req.SipVersion != "SIP/2.0" {
		return &invalid{code: 505, reason: "Version Not Supported"}
	}
	if req.Method == "" || !isToken(string(req.Method)) {
		return bad("bad method")
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips":
	default:
		return &invalid{code: 416, reason: "Unsupported URI Scheme"}
	}
	if r := checkURI(&req.Recipient); r != "" {
		return bad("Request-URI: " + r)
	}
	if len(req.Recipient.Headers) > 0 {
		// RFC 3261 §19.1.5: headers are not allowed in a Request-URI (escruri).
		return bad("headers in Request-URI")
	}
	var n, from, to, callID, cseq, maxFwd, clen, ctype int
	var proxyRequire []string
	for _, h := range req.Headers() {
		n++
		switch h := h.(type) {
		case *sip.ViaHeader:
		case *sip.FromHeader:
			from++
		case *sip.ToHeader:
			to++
		case *sip.CallIDHeader:
			callID++
			if !cleanText(string(*h)) || *h == "" {
				return bad("bad Call-ID")
			}
		case *sip.CSeqHeader:
			cseq++
		case *sip.MaxForwardsHeader:
			maxFwd++
		case *sip.ContentLengthHeader:
			clen++
		case *sip.ContentTypeHeader:
			ctype++
		case *sip.ContactHeader, *sip.RouteHeader, *sip.RecordRouteHeader, *sip.ReferToHeader, *sip.ReferredByHeader:
		default:
			v := h.Value()
			if !cleanText(v) {
				return bad("control byte or broken UTF-8 in " + printable(h.Name()))
			}
			switch name := h.Name(); {
			case strings.EqualFold(name, "proxy-require"):
				proxyRequire = append(proxyRequire, v)
			case strings.EqualFold(name, "date"):
				// RFC 3261 §20.17: SIP dates are always GMT (baddate).
				if !strings.HasSuffix(v, " GMT") {
					return bad("bad Date")
				}
			case strings.EqualFold(name, "expires"):
				if !isDelta(v) {
					return bad("bad Expires")
				}
			}
		}
	}
	if maxHeaders > 0 && n > maxHeaders {
		return bad("too many headers")
	}
	switch {
	case from != 1 || to != 1 || callID != 1 || cseq != 1:
		// Missing (insuf) or repeated (multi01) single-valued headers.
		return bad("From, To, Call-ID and CSeq must appear exactly once")
	case maxFwd > 1 || clen > 1 || ctype > 1:
		return bad("Max-Forwards, Content-Length and Content-Type may appear once") // mcl01
	}
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		// sipgo upper-cases the request method; methods are compared as
		// written otherwise (mismatch01, mismatch02).
		return bad("CSeq method does not match the request")
	}
	if r := checkAddr(&req.From().Address); r != "" {
		return bad("From: " + r)
	}
	if r := checkAddr(&req.To().Address); r != "" {
		return bad("To: " + r)
	}
	via := req.Via()
	if via == nil {
		return bad("no Via") // sipgo answers these itself; checked for other callers
	}
	if via.ProtocolName != "SIP" || via.ProtocolVersion != "2.0" || via.Transport == "" ||
		via.Host == "" || via.Port < 0 || via.Port > 65535 {
		return bad("bad Via")
	}
	if len(proxyRequire) > 0 {
		// RFC 3261 §16.3 step 4: this proxy supports no extension (bext01).
		return &invalid{code: 420, reason: "Bad Extension",
			hdrs: []sip.Header{sip.NewHeader("Unsupported", strings.Join(proxyRequire, ", "))}}
	}
	return nil
}

func bad(why string) *invalid { return &invalid{code: 400, reason: "Bad Request - " + why} }

// checkURI reports what is wrong with a sip: or sips: URI ("" if nothing):
// an empty host, a port out of range, raw control or non-ASCII bytes.
func checkURI(u *sip.Uri) string {
	switch {
	case u.Host == "":
		return "no host"
	case u.Port < 0 || u.Port > 65535:
		return "port out of range"
	case !uriBytes(u.User) || !uriBytes(u.Host) || !uriBytes(u.Password):
		return "raw control or non-ASCII bytes"
	}
	return ""
}

// checkAddr checks the URI of From or To. Other schemes are allowed there
// (RFC 4475 unksm2 is well formed); only a sip or sips URI is looked into.
func checkAddr(u *sip.Uri) string {
	switch strings.ToLower(u.Scheme) {
	case "sip", "sips":
		// sipgo keeps the linear white space before the parameters of an
		// addr-spec written without <> in the host (RFC 4475 wsinv).
		v := *u
		v.Host = strings.TrimRight(v.Host, " \t")
		return checkURI(&v)
	}
	return ""
}

// uriBytes reports whether s has only printable ASCII (escapes stay %XX).
func uriBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// cleanText reports whether a header value is valid UTF-8 with no control
// byte but HTAB (RFC 3261 TEXT-UTF8; a NUL is only legal escaped inside a
// quoted string, which no header sipasync leaves unparsed needs).
func cleanText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return utf8.ValidString(s[i:]) && cleanTextSlow(s[i:])
		}
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func cleanTextSlow(s string) bool {
	for _, r := range s {
		if r < ' ' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 3261 token (a method name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// isDelta reports whether s is delta-seconds: 1 to 10 digits (values past
// 2^32-1 are read as that, RFC 3261 §20.19), with optional parameters
// after ';' as RFC 2543 allowed.
func isDelta(s string) bool {
	s, _, _ = strings.Cut(s, ";")
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 10 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// printable quotes s for a reason phrase: at most 32 bytes, no control
// bytes.
func printable(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	if uriBytes(s) {
		return s
	}
	return strconv.QuoteToASCII(s)
}

// checkRegister checks what a registrar needs of a REGISTER beyond
// validateRequest: the To URI is the address of record and must be sip or
// sips (RFC 3261 §10.2; RFC 4475 unksm2), and a Contact URI may not carry
// URI headers: stored, they would come back as headers in the Request-URI
// of the requests relayed to it (RFC 4475 regbadct). "" means fine.
func checkRegister(req *sip.Request) string {
	switch strings.ToLower(req.To().Address.Scheme) {
	case "sip", "sips":
	default:
		return "the To URI must be sip or sips"
	}
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return "bad Contact"
		}
		if c.Address.Wildcard {
			continue
		}
		if len(c.Address.Headers) > 0 {
			return "headers in a Contact URI"
		}
		if r := checkAddr(&c.Address); r != "" {
			return "Contact: " + r
		}
	}
	return ""
}
