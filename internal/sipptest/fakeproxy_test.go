package sipptest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProxy is a deliberately small record-routing registrar and proxy
// over UDP, used only to check that the scenario files behave through a
// proxy: that UACs send in-dialog requests to [next_url] with [routes],
// that UASs echo Record-Route, and that the UAS answers a hop-by-hop CANCEL
// with a 487 carrying the INVITE's full Via stack. It is not a model of the
// real proxy: it forwards statelessly except for INVITE, where it behaves
// like a transaction-stateful proxy for CANCEL and for ACKs of non-2xx
// responses (it absorbs the caller's ACK and CANCEL and sends its own).
//
// Users named "status-NNN" are answered with NNN by the proxy itself.
type fakeProxy struct {
	t    testing.TB
	conn *net.UDPConn
	addr string // 127.0.0.1:port
	rr   string // our Record-Route / Route URI

	mu         sync.Mutex
	bindings   map[string]string     // user -> contact host:port
	invites    map[string]*fwdInvite // call-id -> forwarded INVITE
	violations []string
	counts     map[string]int
	wg         sync.WaitGroup
}

type fwdInvite struct {
	ruri, branch, from, to, callID, cseq string
	uas                                  string // host:port the INVITE went to
}

func newFakeProxy(t testing.TB) *fakeProxy {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fp := &fakeProxy{
		t:        t,
		conn:     conn,
		addr:     conn.LocalAddr().String(),
		bindings: map[string]string{},
		invites:  map[string]*fwdInvite{},
		counts:   map[string]int{},
	}
	fp.rr = "<sip:" + fp.addr + ";lr>"
	fp.wg.Add(1)
	go fp.serve()
	t.Cleanup(func() {
		conn.Close()
		fp.wg.Wait()
	})
	return fp
}

func (fp *fakeProxy) serve() {
	defer fp.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, src, err := fp.conn.ReadFromUDP(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				fp.violate("read: %v", err)
			}
			return
		}
		m, err := parseSIP(string(buf[:n]))
		if err != nil {
			fp.violate("unparsable message from %s: %v", src, err)
			continue
		}
		if m.isResponse() {
			fp.onResponse(m)
		} else {
			fp.onRequest(m, src)
		}
	}
}

func (fp *fakeProxy) violate(format string, args ...any) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.violations = append(fp.violations, fmt.Sprintf(format, args...))
}

func (fp *fakeProxy) count(what string) {
	fp.mu.Lock()
	fp.counts[what]++
	fp.mu.Unlock()
}

func (fp *fakeProxy) counter(what string) int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.counts[what]
}

func (fp *fakeProxy) binding(user string) (string, bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	c, ok := fp.bindings[user]
	return c, ok
}

func (fp *fakeProxy) requireClean(t testing.TB) {
	t.Helper()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if len(fp.violations) > 0 {
		t.Fatalf("fake proxy saw %d protocol violations:\n%s", len(fp.violations), strings.Join(fp.violations, "\n"))
	}
}

func (fp *fakeProxy) send(m *sipMsg, to string) {
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		fp.violate("bad destination %q: %v", to, err)
		return
	}
	if _, err := fp.conn.WriteToUDP([]byte(m.String()), ua); err != nil && !errors.Is(err, net.ErrClosed) {
		fp.violate("send to %s: %v", to, err)
	}
}

// reply answers a request from the proxy itself.
func (fp *fakeProxy) reply(req *sipMsg, code int, reason string) {
	res := &sipMsg{start: fmt.Sprintf("SIP/2.0 %d %s", code, reason)}
	for _, v := range req.vias() {
		res.add("Via", v)
	}
	res.add("From", req.get("From"))
	to := req.get("To")
	if !strings.Contains(to, ";tag=") {
		to += ";tag=fakeproxy"
	}
	res.add("To", to)
	res.add("Call-ID", req.get("Call-ID"))
	res.add("CSeq", req.get("CSeq"))
	if code == 200 && req.method() == "REGISTER" {
		if c := req.get("Contact"); c != "" {
			res.add("Contact", c)
		}
	}
	res.add("Content-Length", "0")
	fp.send(res, viaTarget(req.vias()[0]))
}

func (fp *fakeProxy) onRequest(m *sipMsg, src *net.UDPAddr) {
	method := m.method()
	if len(m.vias()) == 0 {
		fp.violate("%s without Via", method)
		return
	}
	fp.count("req " + method)
	switch method {
	case "REGISTER":
		fp.onRegister(m)
		return
	case "CANCEL":
		fp.onCancel(m)
		return
	}
	routes := m.routes()
	inDialog := strings.Contains(m.get("To"), ";tag=")
	if method == "ACK" && !inDialog {
		fp.violate("ACK without To tag: %s", m.start)
	}
	if inDialog {
		if len(routes) == 0 || routes[0] != fp.rr {
			if method == "ACK" {
				// Hop-by-hop ACK for a non-2xx final response: ours to absorb.
				fp.checkNon2xxAck(m)
				return
			}
			fp.violate("in-dialog %s without our Route (routes %v): %s", method, routes, m.start)
			return
		}
		fp.count("routed " + method)
		m.setRoutes(routes[1:])
		target := uriHostPort(m.ruri())
		if target == "" {
			fp.violate("in-dialog %s: cannot route to Request-URI %q", method, m.ruri())
			return
		}
		fp.forward(m, target, "z9hG4bK-fp-"+viaBranch(m.vias()[0]))
		return
	}

	// Initial request.
	if mf, err := strconv.Atoi(strings.TrimSpace(m.get("Max-Forwards"))); err == nil && mf == 0 {
		fp.reply(m, 483, "Too Many Hops")
		return
	}
	if len(routes) > 0 {
		fp.reply(m, 403, "Preloaded Route Forbidden")
		return
	}
	user := uriUser(m.ruri())
	if code, ok := strings.CutPrefix(user, "status-"); ok {
		n, _ := strconv.Atoi(code)
		fp.reply(m, n, "Forced By Test")
		return
	}
	contact, ok := fp.binding(user)
	if !ok {
		fp.reply(m, 404, "Not Found")
		return
	}
	branch := "z9hG4bK-fp-" + viaBranch(m.vias()[0])
	m.start = fmt.Sprintf("%s sip:%s@%s SIP/2.0", method, user, contact)
	if method == "INVITE" {
		fp.reply(m, 100, "Trying")
		m.insert("Record-Route", fp.rr)
		fp.mu.Lock()
		fp.invites[m.get("Call-ID")] = &fwdInvite{
			ruri: m.ruri(), branch: branch, from: m.get("From"), to: m.get("To"),
			callID: m.get("Call-ID"), cseq: strings.Fields(m.get("CSeq"))[0], uas: contact,
		}
		fp.mu.Unlock()
	}
	fp.forward(m, contact, branch)
}

func (fp *fakeProxy) forward(m *sipMsg, target, branch string) {
	if mf, err := strconv.Atoi(strings.TrimSpace(m.get("Max-Forwards"))); err == nil {
		m.set("Max-Forwards", strconv.Itoa(mf-1))
	}
	m.setVias(append([]string{"SIP/2.0/UDP " + fp.addr + ";branch=" + branch}, m.vias()...))
	fp.send(m, target)
}

func (fp *fakeProxy) onRegister(m *sipMsg) {
	user := uriUser(m.get("To"))
	contact := uriHostPort(m.get("Contact"))
	expires := strings.TrimSpace(m.get("Expires"))
	if user == "" || contact == "" || expires == "" {
		fp.violate("bad REGISTER: To %q Contact %q Expires %q", m.get("To"), m.get("Contact"), expires)
		fp.reply(m, 400, "Bad Request")
		return
	}
	fp.mu.Lock()
	if expires == "0" {
		delete(fp.bindings, user)
	} else {
		fp.bindings[user] = contact
	}
	fp.mu.Unlock()
	fp.reply(m, 200, "OK")
}

func (fp *fakeProxy) onCancel(m *sipMsg) {
	fp.mu.Lock()
	inv := fp.invites[m.get("Call-ID")]
	fp.mu.Unlock()
	if inv == nil {
		fp.reply(m, 481, "Call/Transaction Does Not Exist")
		return
	}
	if want := "z9hG4bK-fp-" + viaBranch(m.vias()[0]); want != inv.branch {
		fp.violate("CANCEL branch %q does not match the INVITE's", viaBranch(m.vias()[0]))
	}
	if got := strings.Fields(m.get("CSeq")); len(got) != 2 || got[0] != inv.cseq || got[1] != "CANCEL" {
		fp.violate("CANCEL CSeq %q, INVITE CSeq number %s", m.get("CSeq"), inv.cseq)
	}
	fp.reply(m, 200, "OK")
	// Our own CANCEL downstream: a single Via, the forwarded INVITE's branch.
	c := &sipMsg{start: "CANCEL " + inv.ruri + " SIP/2.0"}
	c.add("Via", "SIP/2.0/UDP "+fp.addr+";branch="+inv.branch)
	c.add("Max-Forwards", "70")
	c.add("From", inv.from)
	c.add("To", inv.to)
	c.add("Call-ID", inv.callID)
	c.add("CSeq", inv.cseq+" CANCEL")
	c.add("Content-Length", "0")
	fp.send(c, inv.uas)
}

func (fp *fakeProxy) checkNon2xxAck(m *sipMsg) {
	fp.count("absorbed ACK")
	cseq := strings.Fields(m.get("CSeq"))
	if len(cseq) != 2 || cseq[1] != "ACK" {
		fp.violate("ACK with CSeq %q", m.get("CSeq"))
	}
	fp.mu.Lock()
	inv := fp.invites[m.get("Call-ID")]
	fp.mu.Unlock()
	if inv == nil {
		return // the proxy answered the INVITE itself (403/404/483/...)
	}
	if want := "z9hG4bK-fp-" + viaBranch(m.vias()[0]); want != inv.branch {
		fp.violate("non-2xx ACK branch %q does not match the INVITE's", viaBranch(m.vias()[0]))
	}
	if cseq[0] != inv.cseq {
		fp.violate("non-2xx ACK CSeq %q, INVITE CSeq number %s", m.get("CSeq"), inv.cseq)
	}
}

func (fp *fakeProxy) onResponse(m *sipMsg) {
	vias := m.vias()
	if len(vias) == 0 || !strings.Contains(vias[0], fp.addr) {
		fp.violate("response %q whose top Via is not ours: %v", m.start, vias)
		return
	}
	code := m.code()
	cseq := strings.Fields(m.get("CSeq"))
	if len(cseq) != 2 {
		fp.violate("response with CSeq %q", m.get("CSeq"))
		return
	}
	fp.count(fmt.Sprintf("resp %d %s", code, cseq[1]))
	if cseq[1] == "CANCEL" {
		return // answer to our own hop-by-hop CANCEL
	}
	if cseq[1] == "INVITE" && code > 100 && code < 300 {
		if rr := m.all("Record-Route"); len(rr) != 1 || rr[0] != fp.rr {
			fp.violate("%d to INVITE does not echo our Record-Route: %v", code, rr)
		} else {
			fp.count(fmt.Sprintf("rr echoed %d", code))
		}
	}
	if cseq[1] == "INVITE" && code >= 300 {
		fp.mu.Lock()
		inv := fp.invites[m.get("Call-ID")]
		fp.mu.Unlock()
		if inv != nil {
			a := &sipMsg{start: "ACK " + inv.ruri + " SIP/2.0"}
			a.add("Via", "SIP/2.0/UDP "+fp.addr+";branch="+inv.branch)
			a.add("Max-Forwards", "70")
			a.add("From", inv.from)
			a.add("To", m.get("To"))
			a.add("Call-ID", inv.callID)
			a.add("CSeq", inv.cseq+" ACK")
			a.add("Content-Length", "0")
			fp.send(a, inv.uas)
		}
	}
	rest := vias[1:]
	if len(rest) == 0 {
		fp.violate("%q has only our Via: nowhere to forward it", m.start)
		return
	}
	m.setVias(rest)
	fp.send(m, viaTarget(rest[0]))
}

// sipMsg is a SIP message as a start line, header lines and a body.
type sipMsg struct {
	start string
	hdrs  [][2]string // name, value
	body  string
}

func parseSIP(s string) (*sipMsg, error) {
	head, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		return nil, fmt.Errorf("no end of headers")
	}
	lines := strings.Split(head, "\r\n")
	m := &sipMsg{start: lines[0], body: body}
	for _, l := range lines[1:] {
		if l == "" {
			return nil, fmt.Errorf("empty header line")
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(m.hdrs) == 0 {
				return nil, fmt.Errorf("continuation line first")
			}
			m.hdrs[len(m.hdrs)-1][1] += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", l)
		}
		m.hdrs = append(m.hdrs, [2]string{canonical(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(cl)); err != nil || n != len(body) {
			return nil, fmt.Errorf("Content-Length %q, body has %d bytes", cl, len(body))
		}
	}
	return m, nil
}

func canonical(name string) string {
	switch strings.ToLower(name) {
	case "v", "via":
		return "Via"
	case "f", "from":
		return "From"
	case "t", "to":
		return "To"
	case "i", "call-id":
		return "Call-ID"
	case "m", "contact":
		return "Contact"
	case "l", "content-length":
		return "Content-Length"
	case "cseq":
		return "CSeq"
	case "record-route":
		return "Record-Route"
	case "route":
		return "Route"
	case "max-forwards":
		return "Max-Forwards"
	case "expires":
		return "Expires"
	}
	return name
}

func (m *sipMsg) String() string {
	var b strings.Builder
	b.WriteString(m.start + "\r\n")
	for _, h := range m.hdrs {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n" + m.body)
	return b.String()
}

func (m *sipMsg) isResponse() bool { return strings.HasPrefix(m.start, "SIP/2.0 ") }

func (m *sipMsg) code() int {
	f := strings.Fields(m.start)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func (m *sipMsg) method() string { return strings.Fields(m.start)[0] }

func (m *sipMsg) ruri() string {
	f := strings.Fields(m.start)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func (m *sipMsg) get(name string) string {
	for _, h := range m.hdrs {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// all returns every value of a comma-separable header, one per element.
func (m *sipMsg) all(name string) []string {
	var out []string
	for _, h := range m.hdrs {
		if h[0] == name {
			for _, v := range strings.Split(h[1], ",") {
				out = append(out, strings.TrimSpace(v))
			}
		}
	}
	return out
}

func (m *sipMsg) vias() []string   { return m.all("Via") }
func (m *sipMsg) routes() []string { return m.all("Route") }

func (m *sipMsg) add(name, value string) { m.hdrs = append(m.hdrs, [2]string{name, value}) }

func (m *sipMsg) insert(name, value string) {
	m.hdrs = append([][2]string{{name, value}}, m.hdrs...)
}

func (m *sipMsg) set(name, value string) {
	for i := range m.hdrs {
		if m.hdrs[i][0] == name {
			m.hdrs[i][1] = value
			return
		}
	}
	m.add(name, value)
}

// replaceAll replaces every header called name by one header per value,
// at the position of the first one (or at the top).
func (m *sipMsg) replaceAll(name string, values []string) {
	pos := -1
	var kept [][2]string
	for _, h := range m.hdrs {
		if h[0] == name {
			if pos < 0 {
				pos = len(kept)
			}
			continue
		}
		kept = append(kept, h)
	}
	if pos < 0 {
		pos = 0
	}
	var ins [][2]string
	for _, v := range values {
		ins = append(ins, [2]string{name, v})
	}
	m.hdrs = append(kept[:pos:pos], append(ins, kept[pos:]...)...)
}

func (m *sipMsg) setVias(v []string)   { m.replaceAll("Via", v) }
func (m *sipMsg) setRoutes(r []string) { m.replaceAll("Route", r) }

func viaBranch(via string) string {
	for _, p := range strings.Split(via, ";")[1:] {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "branch="); ok {
			return v
		}
	}
	return ""
}

// viaTarget returns the sent-by host:port of a Via value.
func viaTarget(via string) string {
	f := strings.Fields(via)
	if len(f) < 2 {
		return ""
	}
	hp, _, _ := strings.Cut(f[1], ";")
	return hp
}

// uriUser returns the user part of a SIP URI or name-addr.
func uriUser(s string) string {
	if i := strings.Index(s, "sip:"); i >= 0 {
		s = s[i+4:]
	}
	if u, _, ok := strings.Cut(s, "@"); ok {
		return u
	}
	return ""
}

// uriHostPort returns host:port of a SIP URI or name-addr.
func uriHostPort(s string) string {
	if i := strings.Index(s, "<"); i >= 0 {
		s = s[i+1:]
		if j := strings.Index(s, ">"); j >= 0 {
			s = s[:j]
		}
	}
	s = strings.TrimPrefix(s, "sip:")
	if _, hp, ok := strings.Cut(s, "@"); ok {
		s = hp
	}
	s, _, _ = strings.Cut(s, ";")
	if _, _, err := net.SplitHostPort(s); err != nil {
		return ""
	}
	return s
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
