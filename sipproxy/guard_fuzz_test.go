package sipproxy

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addCorpus seeds a fuzz target with the malformed-input corpus.
func addCorpus(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "malformed", "*.sip"))
	require.NoError(f, err)
	for _, name := range files {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(b)
	}
}

// FuzzValidateRequest: whatever sipgo parses, validation and the registrar
// checks never panic; what validation lets through has everything routing
// dereferences; a refusal is a 4xx/5xx with a one-line reason.
func FuzzValidateRequest(f *testing.F) {
	addCorpus(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := p.ParseSIP(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		why := validateRequest(req, DefaultMaxHeaders)
		if why != nil {
			if why.code < 400 || why.code > 599 || strings.ContainsAny(why.reason, "\r\n\x00") {
				t.Fatalf("refusal %d %q", why.code, why.reason)
			}
			return
		}
		if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
			t.Fatal("a validated request misses a mandatory header")
		}
		if r := checkRegister(req); strings.ContainsAny(r, "\r\n") {
			t.Fatalf("register check %q", r)
		}
	})
}

// FuzzRegistrarSave: the registrar takes any validated REGISTER without
// panicking; it stores bindings or returns an error.
func FuzzRegistrarSave(f *testing.F) {
	f.Add([]byte("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
		"From: <sip:bob@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:bob@127.0.0.1:5070>;expires=60;q=0.5, *\r\nExpires: 30\r\nContent-Length: 0\r\n\r\n"))
	addCorpus(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := p.ParseSIP(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok || validateRequest(req, DefaultMaxHeaders) != nil || checkRegister(req) != "" {
			return
		}
		loc := NewLocation(LocationOptions{Clock: clock.NewMock()})
		bs, err := loc.Save(req)
		if err == nil {
			for _, b := range bs {
				if b.Expires.IsZero() {
					t.Fatal("a binding without an expiry")
				}
			}
		}
		loc.Sweep()
	})
}

// FuzzRawReply: a stateless answer to any bytes is either nothing or one
// well-framed response no longer than the request plus 256 bytes, whose
// lines hold no control byte.
func FuzzRawReply(f *testing.F) {
	addCorpus(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		res := rawReply(b, 400, "Bad Request", "t1")
		if res == nil {
			return
		}
		if !bytes.HasPrefix(res, []byte("SIP/2.0 400 Bad Request\r\n")) || !bytes.HasSuffix(res, []byte("\r\nContent-Length: 0\r\n\r\n")) {
			t.Fatalf("badly framed answer %q", res)
		}
		if len(res) > len(b)+256 {
			t.Fatalf("answer of %d bytes to %d", len(res), len(b))
		}
		head := bytes.TrimSuffix(res, []byte("\r\n\r\n"))
		for _, l := range bytes.Split(head, []byte("\r\n")) {
			if !cleanLine(l) {
				t.Fatalf("answer line %q", l)
			}
		}
		if !bytes.Contains(bytes.ToLower(res), []byte("\r\nv")) {
			t.Fatal("an answer without Via")
		}
	})
}

// FuzzParseQ: a q value that parses is within [0, 1].
func FuzzParseQ(f *testing.F) {
	for _, s := range []string{"0", "1", "0.5", "1.000", "0.1234", ".5", "1.1", "NaN", "-0", "1e0", "0x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseQ(s)
		if err == nil && !(v >= 0 && v <= 1) {
			t.Fatalf("parseQ(%q) = %v", s, v)
		}
	})
}

func TestRawReply(t *testing.T) {
	req := []byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nv: SIP/2.0/UDP g\r\n" +
		"To: <sip:a@b>\r\nf: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nX-Junk: \x01\r\nContent-Length: 5\r\n\r\nbody!")
	res := string(rawReply(req, 400, "Bad Request", "t9"))
	assert.Equal(t, "SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nv: SIP/2.0/UDP g\r\n"+
		"To: <sip:a@b>;tag=t9\r\nf: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nServer: sipasync\r\nContent-Length: 0\r\n\r\n", res)
	m, err := sip.ParseMessage([]byte(res))
	require.NoError(t, err, "the answer parses")
	assert.Equal(t, 400, m.(*sip.Response).StatusCode)

	assert.Nil(t, rawReply([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n"), 400, "Bad Request", "t"), "a response is never answered")
	assert.Nil(t, rawReply([]byte("OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n"), 400, "Bad Request", "t"), "no Via, no answer")
	assert.Nil(t, rawReply([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\x00\r\n\r\n"), 400, "Bad Request", "t"), "a Via with a NUL, no answer")
	assert.Nil(t, rawReply([]byte("\x16\x03\x01garbage"), 400, "Bad Request", "t"))
}

// The guard's log handler counts what sipgo drops and passes the rest on.
func TestSipgoLogCountsDrops(t *testing.T) {
	var out bytes.Buffer
	g := newGuard(0, 0, nil, clock.NewMock())
	g.log = newTextLogger(&out)
	l := g.logger(g.log.Handler()).With("caller", "Transport<UDP>")
	l.Error("failed to parse", "data", "garbage", "error", sip.ErrParseLineNoCRLF)
	l.Error("failed to parse", "data", "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", "error", sip.ErrMessageTooLarge)
	l.Error("Server tx failed to handle request", "error", errors.New("make key failed: no Via"))
	l.Info("something else")
	s := InputStats{Malformed: g.malformed.Load(), MalformedDropped: g.malformedDropped.Load(),
		TooLarge: g.tooLarge.Load(), TooLargeDropped: g.tooLargeDropped.Load()}
	// No socket had read these bytes: nothing could be answered.
	assert.Equal(t, InputStats{Malformed: 2, MalformedDropped: 1, TooLarge: 1, TooLargeDropped: 1}, s)
	assert.Contains(t, out.String(), "something else")
	assert.Equal(t, 1, strings.Count(out.String(), "level=WARN"), "one warning a second at most:\n%s", out.String())
	g.clock.(*clock.Mock).Add(2 * time.Second)
	l.Error("failed to parse", "data", "x", "error", sip.ErrParseLineNoCRLF)
	assert.Equal(t, 2, strings.Count(out.String(), "level=WARN"))
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// FuzzShedDatagram: overload control's raw look at a datagram never
// panics; a 503 it writes is framed, carries Retry-After and the request's
// Via, and is never much longer than the request; what it lets through is
// a response, an ACK or CANCEL, an in-dialog request, or something it could
// not classify.
func FuzzShedDatagram(f *testing.F) {
	addCorpus(f)
	f.Add([]byte(shedInvite))
	f.Add([]byte(strings.Replace(shedInvite, "To: <sip:bob@example.com>", "t: <sip:bob@example.com>;tag=sa-ovl-1", 1)))
	g := newGuard(0, 0, discard(), clock.NewMock())
	g.overload = newOverload(OverloadConfig{Runnable: 1}, clock.NewMock(), discard())
	g.overload.frac.Store(shedScale)
	f.Fuzz(func(t *testing.T, b []byte) {
		var sent []byte
		consumed := g.shedDatagram(b, func(res []byte) error { sent = res; return nil })
		if sent == nil {
			return
		}
		if !consumed {
			t.Fatal("answered but passed on")
		}
		if !bytes.HasPrefix(sent, []byte("SIP/2.0 503 Service Unavailable\r\n")) || !bytes.Contains(sent, []byte("\r\nRetry-After: 5\r\n")) ||
			!bytes.HasSuffix(sent, []byte("\r\nContent-Length: 0\r\n\r\n")) {
			t.Fatalf("badly framed 503 %q", sent)
		}
		if len(sent) > len(b)+256 {
			t.Fatalf("answer of %d bytes to %d", len(sent), len(b))
		}
	})
}

// FuzzHeaderTag: the tag found is a substring of the value, without ';'.
