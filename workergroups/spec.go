package workergroups

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits checked by ParseSpec and Add.
const (
	MaxWorkers  = 10000            // workers per group
	MaxQueue    = 1 << 20          // queued tasks per group
	MaxUsleep   = 60 * time.Second // usleep per task
	MaxNameLen  = 64               // bytes in a group name
	DefaultName = "default"        // name of the default group
)

// Spec describes one worker group, as Kamailio's
// async_workers_group="name=abc;workers=4;nonblock=0;usleep=0".
type Spec struct {
	// Name identifies the group for Lookup: 1..MaxNameLen letters, digits
	// and "_-.:". Case-sensitive, as in Kamailio.
	Name string
	// Workers is the number of goroutines serving the group, 1..MaxWorkers.
	Workers int
	// Nonblock makes Submit return ErrOverload at once when the queue is
	// full, instead of waiting for room.
	Nonblock bool
	// Usleep is the pause each worker takes before it takes a task.
	Usleep time.Duration
	// Queue bounds the tasks accepted but not yet started, 1..MaxQueue.
	// Zero means the registry's default (Options.Queue). Not part of the
	// spec string: Kamailio has no such key.
	Queue int
}

// String returns the spec in Kamailio's syntax; ParseSpec reads it back.
// Queue is not included.
func (s Spec) String() string {
	nb := 0
	if s.Nonblock {
		nb = 1
	}
	return fmt.Sprintf("name=%s;workers=%d;nonblock=%d;usleep=%d",
		s.Name, s.Workers, nb, s.Usleep/time.Microsecond)
}

// Validate reports the first field of s that is out of range.
func (s Spec) Validate() error { return s.validate("") }

func (s Spec) validate(src string) error {
	switch {
	case s.Name == "":
		return badSpec(src, "missing or empty name")
	case len(s.Name) > MaxNameLen:
		return badSpec(src, "name %q: longer than %d bytes", s.Name, MaxNameLen)
	case !validName(s.Name):
		return badSpec(src, "name %q: only letters, digits and _-.: are allowed", s.Name)
	case s.Workers < 1 || s.Workers > MaxWorkers:
		return badSpec(src, "workers=%d: want 1..%d", s.Workers, MaxWorkers)
	case s.Usleep < 0 || s.Usleep > MaxUsleep:
		return badSpec(src, "usleep=%d: want 0..%d microseconds",
			s.Usleep/time.Microsecond, MaxUsleep/time.Microsecond)
	case s.Queue < 0 || s.Queue > MaxQueue:
		return badSpec(src, "queue=%d: want 0..%d", s.Queue, MaxQueue)
	}
	return nil
}

func validName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// ParseSpec parses Kamailio's group syntax: key=value pairs separated by
// ';', keys name, workers, nonblock and usleep (case-insensitive, as
// Kamailio). name and workers are required; nonblock is 0 or 1, usleep a
// number of microseconds, both 0 when absent. Blanks around keys and values
// and one trailing ';' are allowed. Unlike Kamailio, which ignores unknown
// keys and skips groups with no workers, every mistake is an error wrapping
// ErrBadSpec that names the offending key or value.
func ParseSpec(s string) (Spec, error) {
	body := strings.Trim(s, blanks)
	body = strings.TrimSuffix(body, ";")
	if strings.Trim(body, blanks) == "" {
		return Spec{}, badSpec(s, "empty spec")
	}
	var (
		spec Spec
		seen = map[string]bool{}
	)
	for part := range strings.SplitSeq(body, ";") {
		k, v, hasValue := strings.Cut(part, "=")
		k, v = strings.Trim(k, blanks), strings.Trim(v, blanks)
		switch {
		case k == "" && !hasValue:
			return Spec{}, badSpec(s, "empty parameter between ';'")
		case k == "":
			return Spec{}, badSpec(s, "value %q has no key", v)
		case !hasValue:
			return Spec{}, badSpec(s, "key %q has no value (want key=value)", k)
		}
		key := strings.ToLower(k)
		if seen[key] {
			return Spec{}, badSpec(s, "duplicate key %q", k)
		}
		seen[key] = true
		switch key {
		case "name":
			if v == "" {
				return Spec{}, badSpec(s, "missing or empty name")
			}
			spec.Name = v
		case "workers":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Spec{}, badSpec(s, "workers=%q: %s", v, numErr(err))
			}
			spec.Workers = n
		case "nonblock":
			switch v {
			case "0":
				spec.Nonblock = false
			case "1":
				spec.Nonblock = true
			default:
				return Spec{}, badSpec(s, "nonblock=%q: want 0 or 1", v)
			}
		case "usleep":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Spec{}, badSpec(s, "usleep=%q: %s", v, numErr(err))
			}
			if n < 0 || n > int64(MaxUsleep/time.Microsecond) {
				return Spec{}, badSpec(s, "usleep=%d: want 0..%d microseconds", n, MaxUsleep/time.Microsecond)
			}
			spec.Usleep = time.Duration(n) * time.Microsecond
		default:
			return Spec{}, badSpec(s, "unknown key %q (want name, workers, nonblock, usleep)", k)
		}
	}
	if !seen["name"] {
		return Spec{}, badSpec(s, "missing or empty name")
	}
	if !seen["workers"] {
		return Spec{}, badSpec(s, "missing workers")
	}
	if err := spec.validate(s); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

const blanks = " \t\r\n"

func numErr(err error) string {
	if errors.Is(err, strconv.ErrRange) {
		return "number out of range"
	}
	return "not a number"
}

// badSpec wraps ErrBadSpec with the source string (when there is one) and
// what is wrong with it.
func badSpec(src, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if src == "" {
		return fmt.Errorf("%w: %s", ErrBadSpec, msg)
	}
	return fmt.Errorf("%w %q: %s", ErrBadSpec, src, msg)
}
