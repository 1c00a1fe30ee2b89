// Package rawsip reads what routing a SIP message needs from its raw bytes,
// before (or instead of) a full parse: the start line, the Call-ID, the top
// Via's branch, the CSeq and the To tag. The transport path uses it to
// decide cheaply — shed a new request under overload, pick the worker
// shard that owns a dialog (Shard) — and hands the message to the full
// parser only when it goes on.
//
// Scan never allocates and never panics; on bytes it cannot read it
// returns what it found and ok=false, and the caller falls back to the
// full parse. Where both Scan and sipgo's parser read a message, they read
// the same Call-ID, branch, CSeq, To tag and start line
// (FuzzScanAgreesWithSipgo).
package rawsip

import (
	"bytes"
	"hash/maphash"
	"strconv"
	"strings"
)

// Head is what Scan reads. The byte slices point into the scanned message.
type Head struct {
	// Request is true for a request; then Method is its method, else
	// Status is the response's status code.
	Request bool
	Method  []byte
	Status  int
	CallID  []byte
	Branch  []byte // the top Via's branch parameter
	CSeq    uint32
	// CSeqMethod is the method in the CSeq header (a response's request).
	CSeqMethod []byte
	HasTo      bool
	ToTag      []byte // nil when the To header has no tag
}

// Scan reads the start line and the headers (up to the blank line) of
// msg. ok reports whether the start line and Call-ID, Via and CSeq were
// all there and readable.
func Scan(msg []byte) (h Head, ok bool) {
	line, rest := cutLine(msg)
	if !startLine(line, &h) {
		return h, false
	}
	haveVia, haveCSeq := false, false
	for len(rest) > 0 {
		var hl []byte
		hl, rest = cutLine(rest)
		if len(hl) == 0 {
			break // end of headers
		}
		// A folded header (a line starting with white space) continues
		// the one before it: of a header Scan reads, that is refused
		// below; of another, the continuation is skipped.
		if hl[0] == ' ' || hl[0] == '\t' {
			continue
		}
		name, value, found := bytes.Cut(hl, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimSpace(name)
		value = bytes.TrimSpace(value)
		if len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') && (isName(name, "call-id", "i") ||
			isName(name, "via", "v") || isName(name, "cseq", "") || isName(name, "to", "t")) {
			return h, false // folded onto the next line: the full parse joins it
		}
		switch {
		case isName(name, "call-id", "i"):
			if h.CallID != nil {
				return h, false // two Call-IDs: parsers disagree on which counts
			}
			h.CallID = value
		case isName(name, "via", "v"):
			if !haveVia {
				var ok bool
				if h.Branch, ok = viaBranch(value); !ok {
					return h, false
				}
				haveVia = true
			}
		case isName(name, "cseq", ""):
			if haveCSeq {
				return h, false // two CSeqs
			}
			if haveCSeq = cseq(value, &h); !haveCSeq {
				return h, false
			}
		case isName(name, "to", "t"):
			if h.HasTo {
				return h, false // two Tos
			}
			h.HasTo = true
			h.ToTag = Tag(value)
		}
	}
	return h, len(h.CallID) > 0 && haveVia && haveCSeq
}

// Shard returns which of n shards owns callID: every message of a dialog
// (one Call-ID) maps to one shard, so one worker handles them in order.
func Shard(seed maphash.Seed, callID []byte, n int) int {
	if n <= 1 {
		return 0
	}
	return int(maphash.Bytes(seed, callID) % uint64(n))
}

// Tag returns the tag parameter of a From or To value, nil if none.
func Tag(v []byte) []byte {
	// Parameters follow the name-addr's '>' (sipgo takes one there even
	// without its ';') or, without a <...>, the URI.
	if i := bytes.LastIndexByte(v, '>'); i >= 0 && bytes.IndexByte(v[:i], '<') >= 0 {
		return params(v[i+1:], "tag", true)
	}
	return param(v, "tag")
}

// viaBranch returns the branch of a Via value of one via-parm; ok is
// false when the value holds several (a comma list) or does not start with
// its sent-protocol and sent-by (SIP/2.0/TRANSPORT host): Scan does not
// guess at a Via it cannot read plainly, the full parse does.
func viaBranch(v []byte) (branch []byte, ok bool) {
	if bytes.IndexByte(v, ',') >= 0 || !sentProtocolAndBy(v) {
		return nil, false
	}
	return param(v, "branch"), true
}

// sentProtocolAndBy reports whether a via-parm starts as RFC 3261 says:
// SIP/2.0/TRANSPORT, white space, a sent-by before any parameter.
func sentProtocolAndBy(v []byte) bool {
	if len(v) < 8 || !bytes.EqualFold(v[:8], []byte("SIP/2.0/")) {
		return false
	}
	v = v[8:]
	i := bytes.IndexAny(v, " \t")
	if i <= 0 || !isToken(v[:i]) {
		return false
	}
	sentBy := bytes.TrimSpace(v[i:])
	if j := bytes.IndexByte(sentBy, ';'); j >= 0 {
		sentBy = bytes.TrimSpace(sentBy[:j])
	}
	return validSentBy(sentBy)
}

// validSentBy reports whether b is host[:port]: a host name, an IPv4
// address or a bracketed IPv6 one, and a port of 1 to 5 digits.
func validSentBy(b []byte) bool {
	host, port := b, []byte(nil)
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 0 {
			return false
		}
		host, b = b[:end+1], b[end+1:]
		if len(b) > 0 {
			if b[0] != ':' {
				return false
			}
			port = b[1:]
			if len(port) == 0 {
				return false
			}
		}
	} else if k := bytes.IndexByte(b, ':'); k >= 0 {
		host, port = b[:k], b[k+1:]
		if len(port) == 0 {
			return false
		}
	}
	if len(host) == 0 || len(port) > 5 {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	if host[0] == '[' {
		return true
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// param returns the value of ;name=value in v (parameters after the first
// ';'), nil when absent or empty.
func param(v []byte, name string) []byte { return params(v, name, false) }

// params is param; with first, v may start with a parameter without ';'.
func params(v []byte, name string, first bool) []byte {
	for len(v) > 0 {
		if first {
			first = false
		} else {
			i := bytes.IndexByte(v, ';')
			if i < 0 {
				return nil
			}
			v = v[i+1:]
		}
		p := v
		if j := bytes.IndexByte(p, ';'); j >= 0 {
			p = p[:j]
		}
		k, val, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			if val = bytes.TrimSpace(val); len(val) > 0 {
				return val
			}
			return nil
		}
	}
	return nil
}

// cseq reads "NUMBER METHOD".
func cseq(v []byte, h *Head) bool {
	num, method, ok := bytes.Cut(v, []byte(" "))
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(string(num), 10, 32)
	if err != nil {
		return false
	}
	h.CSeq, h.CSeqMethod = uint32(n), bytes.TrimSpace(method)
	return len(h.CSeqMethod) > 0
}

// startLine reads a request line (METHOD SP URI SP SIP/2.0) or a status
// line (SIP/2.0 SP CODE SP reason).
func startLine(line []byte, h *Head) bool {
	if rest, ok := bytes.CutPrefix(line, []byte("SIP/2.0 ")); ok {
		code, _, _ := bytes.Cut(rest, []byte(" "))
		if len(code) != 3 {
			return false
		}
		n, err := strconv.Atoi(string(code))
		if err != nil || n < 100 || n > 699 {
			return false
		}
		h.Status = n
		return true
	}
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !isToken(method) {
		return false
	}
	_, version, ok := bytes.Cut(rest, []byte(" "))
	if !ok || !bytes.Equal(version, []byte("SIP/2.0")) {
		return false
	}
	h.Request, h.Method = true, method
	return true
}

// isName reports whether a header name is long (or its compact form).
func isName(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}

// isToken reports whether b is a non-empty RFC 3261 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// cutLine splits at the first CRLF, as sipgo's parser does (a bare LF is
// part of the line).
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+2:]
}
