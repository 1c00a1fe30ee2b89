package transaction

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTryingSharesHeadersButNotVia(t *testing.T) {
	raw := "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\r\n" +
		"To: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: c1@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Timestamp: 54\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	require.NoError(t, err)
	req := msg.(*sip.Request)
	req.SetSource("127.0.0.1:5070")

	res := trying(req)
	want := sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil)
	assert.Equal(t, want.String(), res.String(), "the same 100 Trying on the wire")
	assert.Equal(t, 100, res.StatusCode)
	assert.Same(t, req.From(), res.From())
	assert.Same(t, req.To(), res.To())
	assert.Same(t, req.CallID(), res.CallID())
	assert.Same(t, req.CSeq(), res.CSeq())
	assert.NotSame(t, req.Via(), res.Via(), "the Via gets received/rport: a copy")
	_, hasRecv := req.Via().Params.Get("received")
	assert.False(t, hasRecv, "the request's Via is untouched")
	_, hasTag := res.To().Params.Get("tag")
	assert.False(t, hasTag, "no To tag on a 100")
}
