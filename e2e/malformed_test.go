package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// The malformed-input corpus (testdata/malformed, outcomes in its EXPECT
// file) sent over UDP and TCP to the running binary: each message gets its
// expected answer or none, a valid request right after it gets its normal
// answer, the proxy's counters at exit account for every refusal, and the
// proxy's memory stays bounded over the rounds.

const (
	malformedRounds  = 25
	malformedMaxSize = 16384
	// A round starts every roundEvery. sipgo keeps a finished server
	// transaction for up to 32 s (Timers H and J), so the proxy's memory
	// grows for the first 32 s whatever it does; from round warmRounds on,
	// transactions end as fast as they start and memory must stay flat:
	// between the end of round warmRounds (37.5 s in) and the end of the
	// last the proxy's RSS may grow by rssBound at most (runs on a loaded
	// 2-core machine measured 1.2 and 1.8 MiB, flat over the last rounds;
	// the heap's growth steps make RSS move by a MiB or so). A leak of
	// 2.6 KiB per message (1,600 messages in between) would exceed it.
	roundEvery = 2500 * time.Millisecond
	warmRounds = 15
	rssBound   = 4 << 20
)

type malformedCase struct {
	name     string
	data     []byte
	udp, tcp string // outcome: a status, "drop", "ok:NNN" or "none"
}

func loadCorpus(t *testing.T) []malformedCase {
	t.Helper()
	dir := filepath.Join("..", "testdata", "malformed")
	f, err := os.Open(filepath.Join(dir, "EXPECT"))
	require.NoError(t, err)
	defer f.Close()
	var cases []malformedCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fs := strings.Fields(line)
		require.Len(t, fs, 3, "EXPECT line %q", line)
		data, err := os.ReadFile(filepath.Join(dir, fs[0]))
		require.NoError(t, err)
		cases = append(cases, malformedCase{name: fs[0], data: data, udp: fs[1], tcp: fs[2]})
	}
	require.NoError(t, sc.Err())
	files, err := filepath.Glob(filepath.Join(dir, "*.sip"))
	require.NoError(t, err)
	require.Len(t, cases, len(files), "every corpus file has an EXPECT line")
	return cases
}

// tally is what the proxy's exit line should count.
type tally struct{ malformed, malformedDropped, tooLarge, tooLargeDropped int }

func (c *tally) add(outcome string) {
	switch outcome {
	case "400", "416", "420", "505":
		c.malformed++
	case "513":
		c.tooLarge++
	case "drop":
		c.malformed++
		c.malformedDropped++
	}
}

// stamp makes a message unique to a round and transport: sipgo would take
// a repeated branch for a retransmission, the registrar a repeated Call-ID
// and CSeq for a replay.
func stamp(data []byte, tag string) []byte {
	data = bytes.ReplaceAll(data, []byte("z9hG4bK"), []byte("z9hG4bK"+tag))
	data = bytes.ReplaceAll(data, []byte("Call-ID: "), []byte("Call-ID: "+tag))
	data = bytes.ReplaceAll(data, []byte("\ni: "), []byte("\ni: "+tag))
	return rport(data)
}

// rport adds ;rport to the top Via (its first branch parameter) so that the
// proxy answers a UDP request to the port it came from, not to the Via's
// (RFC 3581): the corpus's Via hosts are made up.
func rport(data []byte) []byte {
	i := bytes.Index(data, []byte("branch="))
	if i < 0 {
		return data
	}
	j := i + len("branch=")
	for j < len(data) && bytes.IndexByte([]byte(";, \r\n"), data[j]) < 0 {
		j++
	}
	out := append([]byte(nil), data[:j]...)
	out = append(out, ";rport"...)
	return append(out, data[j:]...)
}

var statusLine = regexp.MustCompile(`^SIP/2\.0 (\d{3}) `)

// status returns the status code of a response, 0 if it is none.
func status(b []byte) int {
	m := statusLine.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func callID(b []byte) string {
	for _, l := range strings.Split(string(b), "\r\n") {
		if v, ok := strings.CutPrefix(l, "Call-ID: "); ok {
			return v
		}
	}
	return ""
}

// probe is a valid OPTIONS to an unknown user: the answer is 404.
func probe(transport, laddr, id string) []byte {
	return []byte("OPTIONS sip:nobody@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + laddr + ";branch=z9hG4bK-probe-" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p" + id + "\r\nTo: <sip:nobody@127.0.0.1>\r\n" +
		"Call-ID: probe-" + id + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
}

// rssBytes reads a process's resident set size.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func TestMalformedCorpus(t *testing.T) {
	cases := loadCorpus(t)
	tcpPort := sipptest.FreeTCPPort(t)
	tcpAddr := "127.0.0.1:" + strconv.Itoa(tcpPort)
	p := startProxy(t, "sipasync", "--listen", "tcp:"+tcpAddr,
		"--max-message-size", strconv.Itoa(malformedMaxSize))

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer udp.Close()
	proxyUDP, err := net.ResolveUDPAddr("udp", p.addr)
	require.NoError(t, err)
	probeTCP, err := net.Dial("tcp", tcpAddr)
	require.NoError(t, err)
	defer probeTCP.Close()
	probeTCPr := bufio.NewReader(probeTCP)

	var want tally
	var rssWarm int64
	start := time.Now()
	for round := 1; round <= malformedRounds; round++ {
		time.Sleep(time.Until(start.Add(time.Duration(round-1) * roundEvery)))
		strict := round == 1
		for i, c := range cases {
			id := fmt.Sprintf("r%dc%d", round, i)
			// UDP
			data := stamp(c.data, "u"+id+"-")
			if len(data) > 65000 {
				t.Fatalf("%s: too big for a datagram", c.name)
			}
			_, err := udp.WriteTo(data, proxyUDP)
			require.NoError(t, err)
			checkUDP(t, udp, "u"+id+"-", c.name+" over UDP", c.udp, strict)
			require.Equal(t, 404, udpProbe(t, udp, proxyUDP, id), "%s over UDP: the valid request right after", c.name)
			want.add(c.udp)
			// TCP
			checkTCP(t, tcpAddr, stamp(c.data, "t"+id+"-"), c.name+" over TCP", c.tcp, strict)
			require.Equal(t, 404, tcpProbe(t, probeTCP, probeTCPr, id), "%s over TCP: the valid request right after", c.name)
			want.add(c.tcp)
		}
		rss := rssBytes(t, p.cmd.Process.Pid)
		t.Logf("round %d: proxy RSS %d KiB", round, rss>>10)
		if round == warmRounds {
			rssWarm = rss
		}
	}
	rssEnd := rssBytes(t, p.cmd.Process.Pid)
	assert.Less(t, rssEnd-rssWarm, int64(rssBound), "RSS growth from round %d to %d: %d KiB",
		warmRounds, malformedRounds, (rssEnd-rssWarm)>>10)

	require.Equal(t, 0, p.Stop())
	assert.Equal(t, want.malformed, p.stat(t, "malformed"), "malformed")
	assert.Equal(t, want.malformedDropped, p.stat(t, "malformed_dropped"), "malformed_dropped")
	assert.Equal(t, want.tooLarge, p.stat(t, "too_large"), "too_large")
	assert.Equal(t, want.tooLargeDropped, p.stat(t, "too_large_dropped"), "too_large_dropped")
	assert.Equal(t, 0, p.stat(t, "panics"), "panics")
	assert.NotContains(t, p.Logs(), "panic:", "no Go panic in the log")
}

// quiet is how long "no answer" is waited for in the strict round.
const quiet = 300 * time.Millisecond

// checkUDP reads what the proxy answered to one bad datagram (the answer
// carries its tag in the copied Via or Call-ID). In later
// rounds only expected answers are read (the probe after it proves the
// rest was processed: one socket is read by one goroutine, in order).
func checkUDP(t *testing.T, conn net.PacketConn, tag, what, outcome string, strict bool) {
	t.Helper()
	code, ok := expectedCode(outcome)
	if !ok && !strict {
		return
	}
	wait := 3 * time.Second
	if !ok {
		wait = quiet
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		require.NoError(t, conn.SetReadDeadline(deadline))
		n, _, err := conn.ReadFrom(buf)
		if isTimeout(err) {
			if ok {
				t.Fatalf("%s: no answer, want %d", what, code)
			}
			return
		}
		require.NoError(t, err)
		got := status(buf[:n])
		if !bytes.Contains(buf[:n], []byte(tag)) || got == 100 {
			continue // a retransmitted answer to an earlier message, or 100 Trying
		}
		if !ok {
			t.Fatalf("%s: answered %d, want no answer (%s)", what, got, outcome)
		}
		require.Equal(t, code, got, "%s: status; answer:\n%s", what, firstLine(buf[:n]))
		return
	}
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\r\n")
	return l
}

// checkTCP sends one bad message on a fresh connection and reads the
// answer; for "drop" and "none" there must be none.
func checkTCP(t *testing.T, addr string, data []byte, what, outcome string, strict bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(data)
	require.NoError(t, err)
	code, ok := expectedCode(outcome)
	wait := 3 * time.Second
	switch {
	case outcome == "none":
		if !strict {
			return
		}
		wait = quiet
	case outcome == "drop":
		// The proxy closes the connection after a parse failure; NUL bytes
		// it skips, leaving the connection open.
		wait = quiet
	}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	r := bufio.NewReader(conn)
	for {
		res, err := readResponse(r)
		if outcome == "none" && isTimeout(err) {
			return
		}
		if outcome == "drop" && (isTimeout(err) || isEOF(err)) {
			return
		}
		require.NoError(t, err, "%s: want %s", what, outcome)
		got := status(res)
		if got == 100 {
			continue
		}
		if !ok {
			t.Fatalf("%s: answered %d, want %s", what, got, outcome)
		}
		require.Equal(t, code, got, "%s: status; answer:\n%s", what, firstLine(res))
		return
	}
}

func expectedCode(outcome string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(outcome, "ok:"))
	return n, err == nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isEOF(err error) bool {
	return err != nil && (err.Error() == "EOF" || strings.Contains(err.Error(), "connection reset"))
}

// readResponse reads one SIP message from a stream (headers and a body of
// Content-Length bytes).
func readResponse(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	clen := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		b.WriteString(line)
		if line == "\r\n" {
			if b.Len() == 2 {
				b.Reset() // a keep-alive CRLF
				continue
			}
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			clen, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	b.Write(body)
	return b.Bytes(), nil
}

func udpProbe(t *testing.T, conn net.PacketConn, to net.Addr, id string) int {
	t.Helper()
	_, err := conn.WriteTo(probe("UDP", conn.LocalAddr().String(), id), to)
	require.NoError(t, err)
	buf := make([]byte, 65535)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		n, _, err := conn.ReadFrom(buf)
		require.NoError(t, err, "probe %s over UDP: no answer", id)
		if callID(buf[:n]) == "probe-"+id && status(buf[:n]) >= 200 {
			return status(buf[:n])
		}
	}
}

func tcpProbe(t *testing.T, conn net.Conn, r *bufio.Reader, id string) int {
	t.Helper()
	_, err := conn.Write(probe("TCP", conn.LocalAddr().String(), id))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		res, err := readResponse(r)
		require.NoError(t, err, "probe %s over TCP: no answer", id)
		if callID(res) == "probe-"+id && status(res) >= 200 {
			return status(res)
		}
	}
}
