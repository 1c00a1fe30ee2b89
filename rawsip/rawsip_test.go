package rawsip

import (
	"bytes"
	"hash/maphash"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const invite = "INVITE sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-top\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK-third\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"Call-ID: 3848276298220188511@10.0.0.1\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Content-Length: 0\r\n\r\n"

func TestScanRequest(t *testing.T) {
	h, ok := Scan([]byte(invite))
	if !ok || !h.Request || string(h.Method) != "INVITE" {
		t.Fatalf("Scan: ok=%v %+v", ok, h)
	}
	for _, c := range []struct{ got, want string }{
		{string(h.CallID), "3848276298220188511@10.0.0.1"},
		{string(h.Branch), "z9hG4bK-top"},
		{string(h.CSeqMethod), "INVITE"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if h.CSeq != 314159 || !h.HasTo || h.ToTag != nil {
		t.Errorf("CSeq %d HasTo %v ToTag %q", h.CSeq, h.HasTo, h.ToTag)
	}
}

func TestScanResponseCompactForms(t *testing.T) {
	msg := "SIP/2.0 180 Ringing\r\n" +
		"v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK-c\r\n" +
		"f: <sip:alice@example.com>;tag=a1\r\n" +
		"t: <sip:bob@example.com> ; Tag = b2 ;x=y\r\n" +
		"i: abc@host\r\n" +
		"CSeq: 2 INVITE\r\n" +
		"l: 0\r\n\r\n"
	h, ok := Scan([]byte(msg))
	if !ok || h.Request || h.Status != 180 || string(h.CallID) != "abc@host" || string(h.Branch) != "z9hG4bK-c" ||
		string(h.ToTag) != "b2" || h.CSeq != 2 {
		t.Fatalf("Scan: ok=%v %+v", ok, h)
	}
}

func TestScanRefusesWhatItCannotRead(t *testing.T) {
	for _, msg := range []string{
		"", "\r\n", "INVITE sip:bob@example.com SIP/3.0\r\n\r\n", "INV@TE sip:b SIP/2.0\r\n\r\n",
		"SIP/2.0 99 Low\r\n\r\n", "SIP/2.0 700 High\r\n\r\n", "SIP/2.0 2000 X\r\n\r\n",
		strings.Replace(invite, "Call-ID: 3848276298220188511@10.0.0.1\r\n", "", 1),
		strings.Replace(invite, "CSeq: 314159 INVITE", "CSeq: x INVITE", 1),
		strings.Replace(invite, "CSeq: 314159 INVITE", "CSeq: 314159", 1),
		strings.Replace(invite, "To: <sip:bob@example.com>\r\n", "To: <sip:bob@example.com>\r\n ;tag=folded\r\n", 1),
		strings.Replace(invite, "Via: SIP/2.0/UDP 10.0.0.1:5060", "Via: 10.0.0.1:5060", 1),                      // a top Via it cannot read
		strings.Replace(invite, "z9hG4bK-top\r\n", "z9hG4bK-top, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-2\r\n", 1), // a comma list
	} {
		if h, ok := Scan([]byte(msg)); ok {
			t.Errorf("Scan(%q) = ok, %+v", msg, h)
		}
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	msg := []byte(invite)
	if n := testing.AllocsPerRun(100, func() { _, _ = Scan(msg) }); n != 0 {
		t.Fatalf("Scan allocates %.0f times", n)
	}
}

func TestShardKeepsADialogTogether(t *testing.T) {
	seed := maphash.MakeSeed()
	counts := make([]int, 8)
	for i := range 8000 {
		id := []byte("call-" + string(rune('a'+i%26)) + "-" + strings.Repeat("x", i%7) + string(rune(i)))
		s := Shard(seed, id, 8)
		if s != Shard(seed, append([]byte(nil), id...), 8) {
			t.Fatal("one Call-ID, two shards")
		}
		counts[s]++
	}
	for i, n := range counts {
		if n < 600 || n > 1400 {
			t.Errorf("shard %d got %d of 8000: the hash does not spread", i, n)
		}
	}
	if Shard(seed, []byte("x"), 1) != 0 || Shard(seed, []byte("x"), 0) != 0 {
		t.Error("one shard (or none) is shard 0")
	}
}

// FuzzScanAgreesWithSipgo: Scan never panics, and on every message both
// it and sipgo's parser read, they read the same Call-ID, top Via branch,
// CSeq, To tag and start line. (Scan is stricter about the start line than
// sipgo; what it refuses goes to the full parse.)
func FuzzScanAgreesWithSipgo(f *testing.F) {
	f.Add([]byte(invite))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nTo: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\ni: c\r\nCSeq: 1 BYE\r\n\r\n"))
	f.Add([]byte("BYE sip:b@h SIP/2.0\r\nv: SIP/2.0/TCP h;branch=br\r\nt: b <sip:b@h>;tag=t1\r\nf: <sip:a@h>;tag=f\r\ni: id\r\nCSeq: 9 BYE\r\n\r\n"))
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := Scan(data)
		msg, err := p.ParseSIP(data)
		if err != nil || msg == nil {
			return
		}
		var want Head
		switch m := msg.(type) {
		case *sip.Request:
			want.Request, want.Method = true, []byte(m.Method)
		case *sip.Response:
			want.Status = m.StatusCode
		}
		cid, via, cs, to := msg.CallID(), msg.Via(), msg.CSeq(), msg.To()
		if cid == nil || via == nil || cs == nil {
			return // sipgo parses what it cannot route; so may Scan
		}
		if !ok {
			return
		}
		if got := string(h.CallID); got != strings.TrimSpace(cid.Value()) {
			t.Fatalf("Call-ID %q, sipgo %q: %q", got, cid.Value(), data)
		}
		if b := paramFold(via.Params, "branch"); string(h.Branch) != strings.TrimSpace(b) {
			t.Fatalf("branch %q, sipgo %q: %q", h.Branch, b, data)
		}
		// (white space: sipgo keeps some that Scan trims; not a disagreement)
		if h.CSeq != cs.SeqNo || string(h.CSeqMethod) != strings.TrimSpace(string(cs.MethodName)) {
			t.Fatalf("CSeq %d %q, sipgo %d %q: %q", h.CSeq, h.CSeqMethod, cs.SeqNo, cs.MethodName, data)
		}
		if to != nil {
			tag := paramFold(to.Params, "tag")
			if string(h.ToTag) != strings.TrimSpace(tag) {
				t.Fatalf("To tag %q, sipgo %q: %q", h.ToTag, tag, data)
			}
		}
		if h.Request != want.Request || h.Status != want.Status || (want.Request && !bytes.Equal(h.Method, want.Method)) {
			t.Fatalf("start line %+v, sipgo %+v: %q", h, want, data)
		}
	})
}

// BenchmarkScan is what deciding from the raw bytes costs, against a full
// parse by sipgo.
//
// go test -run '^$' -bench Scan -benchmem ./rawsip/
func BenchmarkScan(b *testing.B) {
	msg := []byte(invite)
	b.Run("rawsip.Scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := Scan(msg); !ok {
				b.Fatal("not ok")
			}
		}
	})
	b.Run("sipgo.ParseSIP", func(b *testing.B) {
		p := sip.NewParser()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ParseSIP(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestTag(t *testing.T) {
	for v, want := range map[string]string{
		" <sip:b@h>;tag=x1":             "x1",
		" <sip:b@h;tag=no>":             "",
		" sip:b@h;tag=x2;other=1":       "x2",
		" \"B\" <sip:b@h> ; TAG = x3 ":  "x3",
		" <sip:b@h>;tag=":               "",
		" <sip:b@h>;foo=bar":            "",
		" <sip:b@h>;foo=bar;tag=x4;q=1": "x4",
	} {
		if got := string(Tag([]byte(v))); got != want {
			t.Errorf("Tag(%q) = %q, want %q", v, got, want)
		}
	}
}

func FuzzTag(f *testing.F) {
	for _, s := range []string{" <sip:b@h>;tag=x1", " sip:b@h;tag=x2;q=1", "<sip:a;tag=no>", ";tag=", ";;;tag", "tag=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag := Tag([]byte(s))
		if tag == nil {
			return
		}
		if len(tag) == 0 || bytes.IndexByte(tag, ';') >= 0 || !strings.Contains(s, string(tag)) {
			t.Fatalf("tag %q of %q", tag, s)
		}
	})
}

// paramFold looks a parameter up by name regardless of case, as RFC 3261
// compares parameter names (sipgo's Get compares them exactly).
func paramFold(ps sip.HeaderParams, name string) string {
	for _, kv := range ps {
		if strings.EqualFold(kv.K, name) {
			return kv.V
		}
	}
	return ""
}
