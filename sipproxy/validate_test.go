package sipproxy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

func parseFile(t *testing.T, name string) *sip.Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "malformed", name))
	require.NoError(t, err)
	m, err := sip.NewParser().ParseSIP(b)
	require.NoError(t, err, name)
	req, ok := m.(*sip.Request)
	require.True(t, ok, "%s is a request", name)
	return req
}

// The corpus's well-formed requests pass validation: it is not over-strict.
func TestValidateAcceptsValidCorpus(t *testing.T) {
	for _, name := range []string{"valid-wsinv.sip", "valid-intmeth.sip", "valid-esc01.sip",
		"valid-escnull.sip", "valid-mpart01.sip", "valid-lwsdisp.sip", "valid-nomaxfwd.sip",
		"ok-long-header.sip", "rfc4475-invut.sip", "rfc4475-zeromf.sip", "rfc4475-unksm2.sip", "rfc4475-regbadct.sip"} {
		why := validateRequest(parseFile(t, name), DefaultMaxHeaders)
		if why != nil {
			t.Errorf("%s: refused %d %q", name, why.code, why.reason)
		}
	}
}

// Requests sipgo parses but RFC 3261 forbids are refused with the RFC's status.
func TestValidateRefusesCorpus(t *testing.T) {
	for name, code := range map[string]int{
		"rfc4475-escruri.sip": 400, "rfc4475-baddate.sip": 400, "rfc4475-badvers.sip": 505,
		"rfc4475-mismatch01.sip": 400, "rfc4475-mismatch02.sip": 400, "rfc4475-bext01.sip": 420,
		"rfc4475-insuf.sip": 400, "rfc4475-multi01.sip": 400, "rfc4475-mcl01.sip": 400,
		"rfc4475-unkscm.sip": 416, "own-no-from.sip": 400, "own-no-to.sip": 400, "own-no-callid.sip": 400,
		"own-dup-cseq.sip": 400, "own-dup-maxfwd.sip": 400, "own-dup-callid.sip": 400,
		"own-bad-via-proto.sip": 400, "own-bad-via-nohost.sip": 400, "own-bad-via-port.sip": 400,
		"own-bad-ruri-nohost.sip": 400, "own-bad-ruri-scheme.sip": 416, "own-bad-ruri-port.sip": 400,
		"own-bad-from-uri.sip": 400, "own-register-expires-junk.sip": 400, "own-nul-in-header.sip": 400,
		"own-nul-in-ruri.sip": 400, "own-non-utf8.sip": 400, "own-non-utf8-ruri.sip": 400,
		"own-empty-method.sip": 400, "own-many-headers.sip": 400, "own-many-vias.sip": 400,
	} {
		why := validateRequest(parseFile(t, name), DefaultMaxHeaders)
		if assert.NotNil(t, why, name) {
			assert.Equal(t, code, why.code, "%s: %s", name, why.reason)
			assert.False(t, strings.ContainsAny(why.reason, "\r\n\x00"), "%s: reason is one clean line", name)
		}
	}
}

func TestCheckRegister(t *testing.T) {
	assert.Contains(t, checkRegister(parseFile(t, "rfc4475-unksm2.sip")), "To URI")
	assert.Contains(t, checkRegister(parseFile(t, "rfc4475-regbadct.sip")), "headers in a Contact")
	assert.Empty(t, checkRegister(parseFile(t, "valid-escnull.sip")))
}

func TestStatusOfParkLimit(t *testing.T) {
	code, reason := statusOf(fmt.Errorf("park: %w", transaction.ErrTooMany))
	assert.Equal(t, 503, code, reason)
	code, _ = statusOf(routes.Error(486, "Busy Here", transaction.ErrTooMany))
	assert.Equal(t, 486, code, "the route's own status wins")
	code, _ = statusOf(errors.New("boom"))
	assert.Equal(t, 500, code)
}

// BenchmarkValidateRequest: the per-request cost of validation on a
// typical SIPp INVITE (run: go test -run '^$' -bench ValidateRequest ./sipproxy/).
func BenchmarkValidateRequest(b *testing.B) {
	m, err := sip.ParseMessage([]byte("INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-1234-1-0\r\nFrom: sipp <sip:sipp@127.0.0.1:5072>;tag=1234SIPpTag001\r\n" +
		"To: <sip:bob@127.0.0.1:5060>\r\nCall-ID: 1-1234@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5072\r\n" +
		"Max-Forwards: 70\r\nSubject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"))
	require.NoError(b, err)
	req := m.(*sip.Request)
	b.ReportAllocs()
	for b.Loop() {
		if validateRequest(req, DefaultMaxHeaders) != nil {
			b.Fatal("refused")
		}
	}
}
