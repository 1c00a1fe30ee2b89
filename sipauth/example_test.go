package sipauth_test

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipasync/sipasync/sipauth"
)

// A REGISTER without credentials is challenged: 401 with one
// WWW-Authenticate per algorithm, SHA-256 first.
func ExampleAuth_Check() {
	store, err := sipauth.Parse(strings.NewReader("alice:example.com:s3cret\n"), "users.txt")
	if err != nil {
		fmt.Println(err)
		return
	}
	auth, err := sipauth.New(sipauth.Options{Credentials: store, Realm: "example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}})
	d := auth.Check(req)
	fmt.Println(d.OK, d.Code, d.Reason)
	for _, h := range d.Headers {
		v := h.Value()
		fmt.Println(h.Name(), v[:strings.Index(v, "nonce=")], v[strings.Index(v, "algorithm="):])
	}
	// Output:
	// false 401 Unauthorized
	// WWW-Authenticate Digest realm="example.com",  algorithm=SHA-256, qop="auth"
	// WWW-Authenticate Digest realm="example.com",  algorithm=MD5, qop="auth"
}
