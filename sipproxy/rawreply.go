package sipproxy

import (
	"bytes"
	"strconv"
	"strings"
)

// rawReply builds a stateless answer to the raw bytes of a request that
// could not be parsed: the status line, the Via, From, To, Call-ID and CSeq
// lines copied as they came (a To tag added when missing), nil when the
// bytes do not start with a request line or carry no usable Via. Lines with
// control bytes are left out; a Via line with them means no answer. The
// answer is never longer than the request plus a few hundred bytes, so it
// cannot amplify.
func rawReply(msg []byte, code int, reason, tag string) []byte {
	return rawReplyWith(msg, code, reason, tag, "")
}

// rawReplyWith is rawReply with extra header lines (each ending in CRLF).
func rawReplyWith(msg []byte, code int, reason, tag, extra string) []byte {
	line, rest := cutLine(msg)
	if !isRequestLine(line) {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(reason)
	b.WriteString("\r\n")
	vias := 0
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded line: the header is left out
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		isVia, isTo := false, false
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "via", "v":
			isVia = true
		case "to", "t":
			isTo = true
		case "from", "f", "call-id", "i", "cseq":
		default:
			continue
		}
		if !cleanLine(line) {
			if isVia {
				return nil
			}
			continue
		}
		if isVia && len(bytes.TrimSpace(value)) == 0 {
			return nil
		}
		b.Write(line)
		if isTo && !bytes.Contains(bytes.ToLower(value), []byte("tag=")) {
			b.WriteString(";tag=")
			b.WriteString(tag)
		}
		b.WriteString("\r\n")
		if isVia {
			vias++
		}
	}
	if vias == 0 {
		return nil
	}
	b.WriteString(extra)
	b.WriteString("Server: sipasync\r\nContent-Length: 0\r\n\r\n")
	if b.Len() > len(msg)+256 {
		return nil
	}
	return b.Bytes()
}

// cutLine splits at the first LF; a CR before it is dropped.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// isRequestLine reports whether line looks like a request line: a method
// token, a space, and "SIP/" later on. Responses are never answered.
func isRequestLine(line []byte) bool {
	method, rest, ok := bytes.Cut(line, []byte(" "))
	return ok && isToken(string(method)) && !bytes.HasPrefix(line, []byte("SIP/")) &&
		bytes.Contains(rest, []byte("SIP/"))
}

// cleanLine reports whether a header line may be copied into an answer:
// at most 1024 bytes, no control byte but HTAB.
func cleanLine(b []byte) bool {
	if len(b) > 1024 {
		return false
	}
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
