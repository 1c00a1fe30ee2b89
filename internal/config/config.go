// Package config layers a program's settings: command-line flags, then
// SIPASYNC_* environment variables, then a YAML config file, then the flags'
// defaults. The flag set is the schema: every flag can be set in each
// layer under its own name, and nothing else can.
//
// In the file a key is a flag's name (log-level: debug), or nested under
// the flag's first word (async: {workers: 4} is --async-workers), with "_"
// accepted for "-". A repeatable flag takes a list. In the environment the
// name is upper case with "_" for "-" (SIPASYNC_ASYNC_WORKERS=4); a
// repeatable flag takes a comma-separated list there.
//
// An unknown key, a key given twice, or a value the flag refuses is an error
// naming the key (and its line in the file). Each layer replaces, never
// appends to, what a lower one set for the same flag.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that sets a flag.
const EnvPrefix = "SIPASYNC_"

// ErrConfig marks every error of this package.
var ErrConfig = errors.New("config")

// reservedEnv are SIPASYNC_* variables that are not flags: settings of the
// project's own tests, which pass through the proxies they start.
var reservedEnv = map[string]bool{"SIPASYNC_NATS_URL": true}

// Source tells where a flag's effective value came from.
type Source string

// Sources, highest precedence first.
const (
	FromFlag    Source = "flag"
	FromEnv     Source = "env"
	FromFile    Source = "file"
	FromDefault Source = "default"
)

// Entry is one key's value(s) from a layer.
type Entry struct {
	Key    string   // as written: "async.workers", "SIPASYNC_ASYNC_WORKERS"
	Flag   string   // the flag it sets
	Values []string // one, or a list for a repeatable flag
	List   bool     // written as a list
	Line   int      // line in the file (0 for the environment)
}

// Layer is the entries of one source, by flag name.
type Layer map[string]Entry

// Options tune Apply.
type Options struct {
	// IgnoreUnknown skips keys that match no flag instead of failing (a
	// reload that sees only the common flags).
	IgnoreUnknown bool
}

// ReadFile reads a YAML (or JSON) config file into a layer over fs's flags.
func ReadFile(fs *pflag.FlagSet, path string, o Options) (Layer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return ParseFile(fs, path, b, o)
}

// ParseFile is ReadFile on the file's contents; name labels errors.
func ParseFile(fs *pflag.FlagSet, name string, b []byte, o Options) (Layer, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	l := Layer{}
	if len(bytes.TrimSpace(b)) == 0 || len(doc.Content) == 0 {
		return l, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: %s: line %d: want a mapping of keys to values", ErrConfig, name, root.Line)
	}
	if err := flatten(fs, name, root, "", "", l, o); err != nil {
		return nil, err
	}
	return l, nil
}

func normalize(k string) string { return strings.ToLower(strings.ReplaceAll(k, "_", "-")) }

func flatten(fs *pflag.FlagSet, file string, m *yaml.Node, prefix, path string, l Layer, o Options) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], m.Content[i+1]
		key := path + kn.Value
		name := prefix + normalize(kn.Value)
		if vn.Kind == yaml.MappingNode {
			if fs.Lookup(name) != nil {
				return fmt.Errorf("%w: %s: line %d: key %q takes a value, not a mapping", ErrConfig, file, kn.Line, key)
			}
			if err := flatten(fs, file, vn, name+"-", key+".", l, o); err != nil {
				return err
			}
			continue
		}
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "help" || name == "print-config" {
			if o.IgnoreUnknown {
				continue
			}
			return fmt.Errorf("%w: %s: line %d: unknown key %q", ErrConfig, file, kn.Line, key)
		}
		if prev, dup := l[name]; dup {
			return fmt.Errorf("%w: %s: line %d: key %q sets --%s again (line %d)", ErrConfig, file, kn.Line, key, name, prev.Line)
		}
		e := Entry{Key: key, Flag: name, Line: kn.Line}
		switch vn.Kind {
		case yaml.SequenceNode:
			e.List = true
			for _, it := range vn.Content {
				if it.Kind != yaml.ScalarNode {
					return fmt.Errorf("%w: %s: line %d: key %q: list items must be plain values", ErrConfig, file, it.Line, key)
				}
				e.Values = append(e.Values, it.Value)
			}
		case yaml.ScalarNode:
			if vn.Tag == "!!null" {
				return fmt.Errorf("%w: %s: line %d: key %q has no value", ErrConfig, file, kn.Line, key)
			}
			e.Values = []string{vn.Value}
		default:
			return fmt.Errorf("%w: %s: line %d: key %q: unsupported value", ErrConfig, file, kn.Line, key)
		}
		l[name] = e
	}
	return nil
}

// Environ reads the SIPASYNC_* variables of environ (os.Environ's form)
// into a layer over fs's flags.
func Environ(fs *pflag.FlagSet, environ []string, o Options) (Layer, error) {
	l := Layer{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) || reservedEnv[k] {
			continue
		}
		name := normalize(strings.TrimPrefix(k, EnvPrefix))
		f := fs.Lookup(name)
		if f == nil || name == "help" || name == "print-config" {
			if o.IgnoreUnknown {
				continue
			}
			return nil, fmt.Errorf("%w: environment: unknown variable %s", ErrConfig, k)
		}
		e := Entry{Key: k, Flag: name, Values: []string{v}}
		if isList(f) {
			e.List, e.Values = true, nil
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					e.Values = append(e.Values, s)
				}
			}
		}
		l[name] = e
	}
	return l, nil
}

func isList(f *pflag.Flag) bool {
	_, ok := f.Value.(pflag.SliceValue)
	return ok
}

// Apply sets every flag the command line did not set (fs was parsed) from
// env, else from file. It returns where each flag's value came from.
func Apply(fs *pflag.FlagSet, env, file Layer) (map[string]Source, error) {
	src := map[string]Source{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		switch {
		case f.Changed:
			src[f.Name] = FromFlag
		case hasEntry(env, f.Name):
			src[f.Name] = FromEnv
			err = set(fs, f, env[f.Name], "environment")
		case hasEntry(file, f.Name):
			src[f.Name] = FromFile
			err = set(fs, f, file[f.Name], "config file")
		default:
			src[f.Name] = FromDefault
		}
	})
	return src, err
}

func hasEntry(l Layer, name string) bool {
	_, ok := l[name]
	return ok
}

func set(fs *pflag.FlagSet, f *pflag.Flag, e Entry, where string) error {
	where += ": "
	if e.Line > 0 {
		where = fmt.Sprintf("config file: line %d: ", e.Line)
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		if err := sv.Replace(e.Values); err != nil {
			return fmt.Errorf("%w: %skey %q: %v", ErrConfig, where, e.Key, err)
		}
		f.Changed = true
		return nil
	}
	if e.List && len(e.Values) != 1 {
		return fmt.Errorf("%w: %skey %q takes one value, not a list", ErrConfig, where, e.Key)
	}
	if err := fs.Set(f.Name, e.Values[0]); err != nil {
		return fmt.Errorf("%w: %skey %q: bad value %q: %v", ErrConfig, where, e.Key, Redact(e.Values[0]), unwrapSet(err))
	}
	return nil
}

// unwrapSet drops pflag's 'invalid argument "x" for "--name" flag:' prefix,
// which repeats what our message says.
func unwrapSet(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, " flag: "); i >= 0 {
		return s[i+len(" flag: "):]
	}
	return s
}

// Redact hides passwords in user:password@host forms (AMQP sockets such as
// E=rabbitmq:user:password@host/x, NATS URLs such as nats://user:password@host)
// in each comma- or space-separated part of s.
func Redact(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	var b strings.Builder
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' || s[i] == ' ' || s[i] == '\t' || s[i] == '\n' {
			b.WriteString(redactOne(s[start:i]))
			if i < len(s) {
				b.WriteByte(s[i])
			}
			start = i + 1
		}
	}
	return b.String()
}

func redactOne(tok string) string {
	at := strings.LastIndexByte(tok, '@')
	if at < 0 {
		return tok
	}
	pre := tok[:at]
	base, url := 0, false
	if i := strings.Index(pre, "//"); i >= 0 {
		base, url = i+2, true
	} else if i := strings.IndexByte(pre, '='); i >= 0 {
		base = i + 1
	}
	info := pre[base:]
	colon := strings.IndexByte(info, ':')
	if colon < 0 {
		return tok // a user without password
	}
	if !url && strings.Count(info, ":") >= 2 { // scheme:user:password
		c2 := strings.IndexByte(info[colon+1:], ':')
		colon += 1 + c2
	}
	return tok[:base+colon+1] + "xxxxx" + tok[at:]
}

// IsSecret reports whether a flag holds a secret by its name: its value is
// never printed.
func IsSecret(name string) bool {
	for _, w := range []string{"token", "password", "secret", "creds"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Print writes the effective configuration of fs as YAML that --config
// reads back, each line commented with its source, secrets redacted. skip
// names flags to leave out (--config itself, --help, ...).
func Print(w *bytes.Buffer, fs *pflag.FlagSet, src map[string]Source, skip ...string) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		if contains(skip, n) {
			continue
		}
		f := fs.Lookup(n)
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: n}
		var v *yaml.Node
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range sv.GetSlice() {
				v.Content = append(v.Content, scalar(n, s))
			}
		} else {
			v = scalar(n, f.Value.String())
		}
		if s := src[n]; s != "" {
			v.LineComment = string(s)
		}
		root.Content = append(root.Content, k, v)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return err
	}
	return enc.Close()
}

func scalar(name, val string) *yaml.Node {
	if IsSecret(name) && val != "" {
		val = "<redacted>"
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: Redact(val)}
	if val == "" {
		n.Style = yaml.DoubleQuotedStyle // "" reads back as empty, not as no value
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
