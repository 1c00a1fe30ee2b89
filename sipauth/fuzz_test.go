package sipauth

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzParseFile: any credentials file is loaded or refused with one line
// that names a line and never shows the password of the line.
func FuzzParseFile(f *testing.F) {
	f.Add("alice:r:pw\n")
	f.Add("# c\nbob:r:MD5:" + HA1(MD5, "bob", "r", "x") + "\n")
	f.Add("bob:r:SHA-256:" + HA1(SHA256, "bob", "r", "x") + "\nbob:r:MD5:00\n")
	f.Add("a:b\n:::\n\x00:\x01:\xff\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(strings.NewReader(text), "f")
		if err != nil {
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "f: ") {
				t.Fatalf("error %q: want one line naming the file", err)
			}
			return
		}
		if s == nil {
			t.Fatal("nil store without an error")
		}
	})
}

// FuzzCheck: any credentials header gets a decision (never a panic), and
// only a 400 or a challenge when the header is not a valid answer.
func FuzzCheck(f *testing.F) {
	f.Add(`Digest username="alice", realm="sip.test", nonce="x", uri="sip:sip.test", response="00", qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`Digest realm="sip.test"`)
	f.Add(`Digest username="alice", realm="sip.test", nonce="GIbK8hzD-MBMJ_lsrk_m1xblf56boW4JDmM6oOZ58Y8", uri="sip:sip.test", response="00", algorithm=SHA-256, qop=auth, nc=1, cnonce="c"`)
	f.Add(`Basic abc`)
	store, err := Parse(strings.NewReader("alice:sip.test:pw\n"), "f")
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(Options{Credentials: store, Realm: "sip.test"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "sip.test"})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "sip.test"}})
		req.AppendHeader(sip.NewHeader("Authorization", v))
		d := a.Check(req)
		switch {
		case d.OK:
			t.Fatalf("%q authenticated", v)
		case d.Code != 400 && d.Code != 401:
			t.Fatalf("%q: %d", v, d.Code)
		}
	})
}
