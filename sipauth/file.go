package sipauth

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
)

// Algorithms sipasync answers, by their names in RFC 8760.
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// ErrFile marks an unusable credentials file.
var ErrFile = errors.New("sipauth: credentials file")

// maxLine bounds one line of a credentials file.
const maxLine = 4096

// Store holds the credentials of a file: per user and realm, the HA1 of
// each algorithm (the hex hash of "user:realm:password"). Passwords given in
// clear are hashed on load and not kept. A Store is read-only once loaded
// and safe for concurrent use.
type Store struct {
	ha1 map[credKey]string
}

type credKey struct{ user, realm, alg string }

// ReadFile loads a credentials file; see Parse for its format.
func ReadFile(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads credentials, one per line; name is used in errors. A line is
//
//	user:realm:password          a password in clear (HA1s for MD5 and SHA-256 are computed)
//	user:realm:MD5:HEX           an MD5 HA1 (32 hex digits), as Apache's htdigest writes it after the realm
//	user:realm:SHA-256:HEX       a SHA-256 HA1 (64 hex digits)
//
// The password is the rest of the line after the second ':' (it may hold
// ':'), except that a rest starting with "MD5:" or "SHA-256:" is an HA1 and
// must be one. Empty lines and lines starting with '#' are skipped;
// surrounding blanks are trimmed from the user and realm, never from a
// password. A user and realm may have both an MD5 and a SHA-256 line. A
// malformed line, or the same user, realm and algorithm twice, is an error
// naming the line (and never showing the password).
func Parse(r io.Reader, name string) (*Store, error) {
	s := &Store{ha1: map[credKey]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
			continue
		}
		if err := s.parseLine(line); err != nil {
			return nil, fmt.Errorf("%w: %s: line %d: %v", ErrFile, name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: %s: line %d: longer than %d bytes", ErrFile, name, n+1, maxLine)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrFile, name, err)
	}
	return s, nil
}

func (s *Store) parseLine(line string) error {
	user, rest, ok := strings.Cut(line, ":")
	if !ok {
		return errors.New(`want user:realm:password, user:realm:MD5:HA1 or user:realm:SHA-256:HA1`)
	}
	realm, secret, ok := strings.Cut(rest, ":")
	if !ok {
		return errors.New(`want user:realm:password, user:realm:MD5:HA1 or user:realm:SHA-256:HA1`)
	}
	user, realm = strings.TrimSpace(user), strings.TrimSpace(realm)
	if err := checkToken("user", user); err != nil {
		return err
	}
	if err := checkToken("realm", realm); err != nil {
		return err
	}
	for _, alg := range []string{MD5, SHA256} {
		if len(secret) > len(alg) && strings.EqualFold(secret[:len(alg)], alg) && secret[len(alg)] == ':' {
			ha1 := strings.ToLower(strings.TrimSpace(secret[len(alg)+1:]))
			if len(ha1) != hexLen(alg) {
				return fmt.Errorf("%s HA1: want %d hex digits, got %d characters", alg, hexLen(alg), len(ha1))
			}
			if _, err := hex.DecodeString(ha1); err != nil {
				return fmt.Errorf("%s HA1: not hexadecimal", alg)
			}
			return s.add(user, realm, alg, ha1)
		}
	}
	if secret == "" {
		return errors.New("empty password")
	}
	for _, alg := range []string{MD5, SHA256} {
		if err := s.add(user, realm, alg, HA1(alg, user, realm, secret)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) add(user, realm, alg, ha1 string) error {
	k := credKey{user, realm, alg}
	if _, dup := s.ha1[k]; dup {
		return fmt.Errorf("user %q in realm %q has %s credentials on an earlier line", user, realm, alg)
	}
	s.ha1[k] = ha1
	return nil
}

// checkToken refuses what cannot appear in a digest username or realm as
// sipasync writes and compares them: empty, control characters, '"' or '\'.
func checkToken(what, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s", what)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("%s %q: control character, '\"' or '\\'", what, v)
		}
	}
	return nil
}

// HA1 returns the hex HA1 of the algorithm: H(user:realm:password).
func HA1(alg, user, realm, password string) string {
	h := newHash(alg)
	if h == nil {
		return ""
	}
	_, _ = io.WriteString(h, user+":"+realm+":"+password)
	return hex.EncodeToString(h.Sum(nil))
}

// Lookup returns the HA1 of user in realm for the algorithm.
func (s *Store) Lookup(user, realm, alg string) (string, bool) {
	if s == nil {
		return "", false
	}
	ha1, ok := s.ha1[credKey{user, realm, alg}]
	return ha1, ok
}

// Users returns how many distinct users the store has in realm.
func (s *Store) Users(realm string) int {
	if s == nil {
		return 0
	}
	seen := map[string]bool{}
	for k := range s.ha1 {
		if k.realm == realm {
			seen[k.user] = true
		}
	}
	return len(seen)
}

func newHash(alg string) hash.Hash {
	switch alg {
	case MD5:
		return md5.New()
	case SHA256:
		return sha256.New()
	}
	return nil
}

func hexLen(alg string) int {
	if alg == SHA256 {
		return 64
	}
	return 32
}

// canonAlg returns the algorithm's canonical name ("" and any case of MD5
// is MD5), or "" for one sipasync does not take.
func canonAlg(a string) string {
	switch {
	case a == "" || strings.EqualFold(a, MD5):
		return MD5
	case strings.EqualFold(a, SHA256):
		return SHA256
	}
	return ""
}
