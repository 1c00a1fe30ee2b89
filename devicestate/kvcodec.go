package devicestate

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// KV layout (all keys in one bucket, one writer per key):
//
//	dev.<device>.<node>   this node's view of the device: a state name, e.g. "INUSE"
//	mwi.<mailbox>.<node>  {"new":N,"old":N,"t":unix-ms} set on that node
//	node.<node>           heartbeat {"t":unix-ms,"exp":ms,"boot":"hex"}
//
// Device and mailbox names are escaped: letters, digits, '-' and '_' stay,
// every other byte is written =HH.
const (
	kindDev = "d:"
	kindMWI = "m:"
)

func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

func unescapeName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("devicestate: bad escape in %q", s)
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("devicestate: bad escape in %q", s)
		}
		b.WriteByte(v[0])
		i += 2
	}
	return b.String(), nil
}

func devKey(device, node string) string  { return "dev." + escapeName(device) + "." + node }
func mwiKey(mailbox, node string) string { return "mwi." + escapeName(mailbox) + "." + node }
func nodeKey(node string) string         { return "node." + node }

// parseKey splits a key into kind ("dev", "mwi", "node"), name and node.
func parseKey(key string) (kind, name, node string, err error) {
	parts := strings.Split(key, ".")
	switch {
	case len(parts) == 2 && parts[0] == "node":
		return "node", "", parts[1], nil
	case len(parts) == 3 && (parts[0] == "dev" || parts[0] == "mwi"):
		name, err = unescapeName(parts[1])
		return parts[0], name, parts[2], err
	}
	return "", "", "", fmt.Errorf("devicestate: unknown key %q", key)
}

type heartbeat struct {
	T    int64  `json:"t"`
	Exp  int64  `json:"exp"`
	Boot string `json:"boot"`
}

type mwiValue struct {
	New int   `json:"new"`
	Old int   `json:"old"`
	T   int64 `json:"t"`
}

// The values: a device view is its state's name; a mailbox view and a
// heartbeat are JSON.

func encodeDevice(s State) []byte { return []byte(s.String()) }

func decodeDevice(val []byte) (State, error) { return ParseState(string(val)) }

func encodeMailbox(v mwiValue) []byte {
	b, _ := json.Marshal(v) // ints only: cannot fail
	return b
}

func decodeMailbox(val []byte) (mwiValue, error) {
	var v mwiValue
	if err := json.Unmarshal(val, &v); err != nil {
		return v, fmt.Errorf("devicestate: mailbox value: %w", err)
	}
	if v.New < 0 || v.Old < 0 {
		return v, fmt.Errorf("devicestate: mailbox value %s: negative count", val)
	}
	return v, nil
}

func encodeHeartbeat(hb heartbeat) []byte {
	b, _ := json.Marshal(hb) // ints and a string: cannot fail
	return b
}

func decodeHeartbeat(val []byte) (heartbeat, error) {
	var hb heartbeat
	if err := json.Unmarshal(val, &hb); err != nil {
		return hb, fmt.Errorf("devicestate: heartbeat: %w", err)
	}
	return hb, nil
}
