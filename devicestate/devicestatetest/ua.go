package devicestatetest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// UA is a minimal SIP user agent on a UDP port of 127.0.0.1: it registers,
// places calls (INVITE, ACK, BYE through a proxy) and answers them. Every
// message it receives waits in a queue for Expect*.
type UA struct {
	t    testing.TB
	User string
	Port int
	conn *net.UDPConn
	in   chan received
	cseq int
}

type received struct {
	msg  sip.Message
	from *net.UDPAddr
}

// NewUA listens for user on a free port; closed at the end of the test.
func NewUA(t testing.TB, user string) *UA {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &UA{t: t, User: user, Port: c.LocalAddr().(*net.UDPAddr).Port, conn: c, in: make(chan received, 64), cseq: 1}
	go u.read()
	t.Cleanup(func() { _ = c.Close() })
	return u
}

func (u *UA) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			close(u.in)
			return
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		select {
		case u.in <- received{m, from}:
		default: // nobody reads: drop
		}
	}
}

// Addr returns "127.0.0.1:port".
func (u *UA) Addr() string { return "127.0.0.1:" + strconv.Itoa(u.Port) }

// URI returns the UA's contact, sip:user@127.0.0.1:port.
func (u *UA) URI() string { return "sip:" + u.User + "@" + u.Addr() }

func token() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Send sends a raw message to addr; lines are joined with CRLF.
func (u *UA) Send(addr string, lines ...string) {
	u.t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		u.t.Fatal(err)
	}
	msg := strings.Join(lines, "\r\n") + "\r\n\r\n"
	if _, err := u.conn.WriteToUDP([]byte(msg), to); err != nil {
		u.t.Fatal(err)
	}
}

func (u *UA) via() string {
	return "Via: SIP/2.0/UDP " + u.Addr() + ";branch=z9hG4bK" + token() + ";rport"
}

// Register registers the UA's contact with the proxy at addr (expires
// seconds; 0 unregisters) and waits for the 200.
func (u *UA) Register(addr string, expires int) {
	u.t.Helper()
	u.cseq++
	u.Send(addr, "REGISTER sip:"+addr+" SIP/2.0", u.via(), "Max-Forwards: 70",
		"From: <sip:"+u.User+"@127.0.0.1>;tag="+token(), "To: <sip:"+u.User+"@127.0.0.1>",
		"Call-ID: reg-"+u.User+"-"+strconv.Itoa(u.Port), "CSeq: "+strconv.Itoa(u.cseq)+" REGISTER",
		"Contact: <"+u.URI()+">", "Expires: "+strconv.Itoa(expires), "Content-Length: 0")
	u.ExpectStatus(200, "REGISTER")
}

// Call is a call the UA places.
type Call struct {
	ua      *UA
	proxy   string
	CallID  string
	ruri    string
	to      string
	fromTag string
	ok      *sip.Response
}

// Invite sends an INVITE for ruri (To: to) through the proxy at addr.
func (u *UA) Invite(addr, ruri, to string) *Call {
	u.t.Helper()
	c := &Call{ua: u, proxy: addr, CallID: "call-" + token(), ruri: ruri, to: to, fromTag: token()}
	u.Send(addr, "INVITE "+ruri+" SIP/2.0", u.via(), "Max-Forwards: 70",
		"From: <sip:"+u.User+"@127.0.0.1>;tag="+c.fromTag, "To: <"+to+">", "Call-ID: "+c.CallID,
		"CSeq: 1 INVITE", "Contact: <"+u.URI()+">", "Content-Length: 0")
	return c
}

// Answered waits for the call's 200 and sends the ACK.
func (c *Call) Answered() {
	c.ua.t.Helper()
	c.ok = c.ua.ExpectStatus(200, "INVITE")
	c.inDialog("ACK", 1)
}

// Hangup sends a BYE and waits for its 200.
func (c *Call) Hangup() {
	c.ua.t.Helper()
	c.Bye()
	c.ua.ExpectStatus(200, "BYE")
}

// Bye sends a BYE without waiting for the answer (for a test that answers
// it itself on the same goroutine).
func (c *Call) Bye() { c.inDialog("BYE", 2) }

// Options sends an OPTIONS for sip:user@addr to the proxy at addr and
// returns its 200.
func (u *UA) Options(addr, user string) *sip.Response {
	u.t.Helper()
	u.cseq++
	u.Send(addr, "OPTIONS sip:"+user+"@"+addr+" SIP/2.0", u.via(), "Max-Forwards: 70",
		"From: <sip:"+u.User+"@127.0.0.1>;tag="+token(), "To: <sip:"+user+"@"+addr+">",
		"Call-ID: opt-"+token(), "CSeq: "+strconv.Itoa(u.cseq)+" OPTIONS", "Content-Length: 0")
	return u.ExpectStatus(200, "OPTIONS")
}

func (c *Call) inDialog(method string, cseq int) {
	u := c.ua
	target := c.ruri
	if h := c.ok.Contact(); h != nil {
		target = h.Address.String()
	}
	lines := []string{method + " " + target + " SIP/2.0", u.via(), "Max-Forwards: 70",
		"From: <sip:" + u.User + "@127.0.0.1>;tag=" + c.fromTag, "To: " + c.ok.To().Value(),
		"Call-ID: " + c.CallID, "CSeq: " + strconv.Itoa(cseq) + " " + method}
	for _, h := range c.ok.GetHeaders("Record-Route") {
		lines = append(lines, "Route: "+h.Value())
	}
	u.Send(c.proxy, append(lines, "Content-Length: 0")...)
}

// Incoming is a request the UA received.
type Incoming struct {
	ua   *UA
	Req  *sip.Request
	from *net.UDPAddr
	tag  string
}

// ExpectRequest waits for a request of the method (others are skipped).
func (u *UA) ExpectRequest(method string) *Incoming {
	u.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r, ok := <-u.in:
			if !ok {
				u.t.Fatalf("%s: closed while waiting for %s", u.User, method)
			}
			if req, ok := r.msg.(*sip.Request); ok && string(req.Method) == method {
				return &Incoming{ua: u, Req: req, from: r.from, tag: token()}
			}
		case <-deadline:
			u.t.Fatalf("%s: no %s within 5s", u.User, method)
			return nil
		}
	}
}

// Reply answers the request through the hop it came from.
func (in *Incoming) Reply(code int, reason string) {
	in.ua.t.Helper()
	res := sip.NewResponseFromRequest(in.Req, code, reason, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") && code > 100 {
		to.Params.Add("tag", in.tag)
	}
	if in.Req.IsInvite() {
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: in.ua.User, Host: "127.0.0.1", Port: in.ua.Port}})
	}
	if _, err := in.ua.conn.WriteToUDP([]byte(res.String()), in.from); err != nil {
		in.ua.t.Fatal(err)
	}
}

// ExpectStatus waits for a final or provisional response with the code to
// a request of the method; 100 Trying and other codes are skipped.
func (u *UA) ExpectStatus(code int, method string) *sip.Response {
	u.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r, ok := <-u.in:
			if !ok {
				u.t.Fatalf("%s: closed while waiting for %d", u.User, code)
			}
			res, ok := r.msg.(*sip.Response)
			if !ok || res.CSeq() == nil || string(res.CSeq().MethodName) != method {
				continue
			}
			if res.StatusCode == code {
				return res
			}
			if res.StatusCode >= 200 {
				u.t.Fatalf("%s: got %d %s to %s, want %d", u.User, res.StatusCode, res.Reason, method, code)
			}
		case <-deadline:
			u.t.Fatalf("%s: no %d to %s within 5s", u.User, code, method)
			return nil
		}
	}
}

// String names the UA in failures.
func (u *UA) String() string { return fmt.Sprintf("%s@%s", u.User, u.Addr()) }
