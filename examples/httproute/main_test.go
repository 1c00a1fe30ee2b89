package main

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDecision(t *testing.T) {
	for _, tc := range []struct {
		body   string
		ok     bool
		action string
	}{
		{`{"action":"relay"}`, true, "relay"},
		{`{"action":"relay","extra":1}`, true, "relay"},
		{`{"action":"reply","code":486,"reason":"Busy Here"}`, true, "reply"},
		{`{"action":"reply","code":603}`, true, "reply"},
		{`{"action":"redirect","target":"sip:bob@127.0.0.1:5070"}`, true, "redirect"},
		{`{"action":"redirect","target":"sips:bob@example.com"}`, true, "redirect"},
		{`{"action":"reply","code":200,"reason":"OK"}`, false, ""},        // a proxy's 2xx makes no dialog
		{`{"action":"reply","code":180}`, false, ""},                      // not final
		{`{"action":"reply","code":486,"reason":"a\r\nX: y"}`, false, ""}, // header injection
		{`{"action":"redirect","target":"http://example.com"}`, false, ""},
		{`{"action":"redirect","target":""}`, false, ""},
		{`{"action":"redirect"}`, false, ""},
		{`{"action":"dance"}`, false, ""},
		{`{}`, false, ""},
		{`{not json`, false, ""},
		{``, false, ""},
		{`[]`, false, ""},
	} {
		d, err := parseDecision([]byte(tc.body))
		if !tc.ok {
			assert.Error(t, err, tc.body)
			continue
		}
		if assert.NoError(t, err, tc.body) {
			assert.Equal(t, tc.action, d.Action, tc.body)
		}
	}
	d, err := parseDecision([]byte(`{"action":"reply","code":603}`))
	require.NoError(t, err)
	assert.Equal(t, "Rejected", d.Reason, "a reply without reason gets one")
	d, err = parseDecision([]byte(`{"action":"redirect","target":"sip:bob@127.0.0.1:5070"}`))
	require.NoError(t, err)
	assert.Equal(t, "bob", d.uri.User)
	assert.Equal(t, "127.0.0.1", d.uri.Host)
	assert.Equal(t, 5070, d.uri.Port)
}

func TestLookupURL(t *testing.T) {
	base, err := parseLookupURL("http://127.0.0.1:8080/route?key=k1")
	require.NoError(t, err)
	got, err := url.Parse(lookupURL(base, "bob", "al ice&x"))
	require.NoError(t, err)
	assert.Equal(t, "/route", got.Path)
	assert.Equal(t, url.Values{"key": {"k1"}, "user": {"bob"}, "from": {"al ice&x"}}, got.Query(), "escaped, base parameters kept")
	assert.Equal(t, "key=k1", base.RawQuery, "the base URL is not changed")

	for _, bad := range []string{"", "ftp://x", "127.0.0.1:8080", "/route", "http://", "http://[::1"} {
		_, err := parseLookupURL(bad)
		assert.Error(t, err, bad)
	}
}
