package sipauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFile(t *testing.T) {
	md5ha1 := HA1(MD5, "bob", "r", "pw")
	shaha1 := HA1(SHA256, "bob", "r", "pw")
	s, err := Parse(strings.NewReader("# comment\n\n  \t\n"+
		"alice:r: spaced pw \r\n"+
		"bob:r:MD5:"+strings.ToUpper(md5ha1)+"\n"+
		"bob : r :sha-256:"+shaha1+"\n"+
		"alice:other:MD5:x\n"[:0]+
		"dave:r:MD5-not-an-ha1\n"), "f")
	require.NoError(t, err)
	ha1, ok := s.Lookup("alice", "r", MD5)
	require.True(t, ok)
	assert.Equal(t, HA1(MD5, "alice", "r", " spaced pw "), ha1) // a password is never trimmed
	ha1, ok = s.Lookup("alice", "r", SHA256)
	require.True(t, ok)
	assert.Equal(t, HA1(SHA256, "alice", "r", " spaced pw "), ha1)
	ha1, _ = s.Lookup("bob", "r", MD5)
	assert.Equal(t, md5ha1, ha1) // lower-cased
	ha1, _ = s.Lookup("bob", "r", SHA256)
	assert.Equal(t, shaha1, ha1)
	ha1, _ = s.Lookup("dave", "r", MD5)
	assert.Equal(t, HA1(MD5, "dave", "r", "MD5-not-an-ha1"), ha1)
	_, ok = s.Lookup("alice", "other", MD5)
	assert.False(t, ok)
	assert.Equal(t, 3, s.Users("r"))
	assert.Equal(t, 0, s.Users("other"))
}

// Every bad line is an error naming the file and the line, and never the
// password.
func TestParseFileErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"alice\n", "line 1: want user:realm:password"},
		{"# c\nalice:r\n", "line 2: want user:realm:password"},
		{"alice:r:\n", "line 1: empty password"},
		{":r:topsecret\n", "line 1: empty user"},
		{"alice::topsecret\n", "line 1: empty realm"},
		{"al\"ice:r:topsecret\n", `line 1: user "al\"ice"`},
		{"alice:r:topsecret\nalice:r:topsecret2\n", `line 2: user "alice" in realm "r" has MD5 credentials on an earlier line`},
		{"alice:r:MD5:" + HA1(MD5, "a", "r", "p") + "\nalice:r:topsecret\n", "line 2: user \"alice\" in realm \"r\" has MD5"},
		{"alice:r:MD5:abc\n", "line 1: MD5 HA1: want 32 hex digits, got 3 characters"},
		{"alice:r:SHA-256:" + HA1(MD5, "a", "r", "p") + "\n", "line 1: SHA-256 HA1: want 64 hex digits"},
		{"alice:r:md5:" + strings.Repeat("g", 32) + "\n", "line 1: MD5 HA1: not hexadecimal"},
		{"alice:r:" + strings.Repeat("x", maxLine+10) + "\n", "line 1: longer than"},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.text), "users.txt")
		require.Error(t, err, c.text)
		assert.ErrorIs(t, err, ErrFile)
		assert.Contains(t, err.Error(), "users.txt: "+c.want)
		assert.NotContains(t, err.Error(), "topsecret")
		assert.Equal(t, 0, strings.Count(err.Error(), "\n"), "one line")
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "users")
	require.NoError(t, os.WriteFile(p, []byte("alice:r:pw\n"), 0o600))
	s, err := ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, 1, s.Users("r"))
	_, err = ReadFile(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, ErrFile)
	assert.ErrorIs(t, err, os.ErrNotExist)
}
