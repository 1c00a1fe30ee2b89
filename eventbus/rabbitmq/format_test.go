package rabbitmq

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/sipasync/sipasync/eventbus/evi"
)

// FuzzEncodeJSON: whatever event evi accepts, the JSON format is valid JSON
// that encoding/json reads back to the event name and the attributes, in
// order, invalid UTF-8 replaced by U+FFFD byte by byte (as encoding/json
// writes it); the body never panics.
//
//	go test -run '^$' -fuzz FuzzEncodeJSON -fuzztime 1m ./eventbus/rabbitmq/
func FuzzEncodeJSON(f *testing.F) {
	f.Add("E_SIP_MESSAGE", "user", "alice", "msg", "hi, \"bob\"\r\n\t\\ <&> \x00\x7f é \u2028 \xff")
	f.Add("E", "a", "", "a", "\xed\xa0\x80") // a surrogate, repeated name
	f.Fuzz(func(t *testing.T, event, n1, v1, n2, v2 string) {
		ev, err := evi.NewEvent(event, time.Time{}, evi.String(n1, v1), evi.String(n2, v2))
		if err != nil {
			return
		}
		b := body(FormatJSON, ev)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON %q", b)
		}
		var head struct {
			JSONRPC string `json:"jsonrpc"`
			Method  string `json:"method"`
		}
		if err := json.Unmarshal(b, &head); err != nil || head.JSONRPC != "2.0" || head.Method != string([]rune(event)) {
			t.Fatalf("head %+v, %v in %q", head, err, b)
		}
		got := paramsInOrder(t, b)
		want := []string{string([]rune(n1)), string([]rune(v1)), string([]rune(n2)), string([]rune(v2))}
		if len(got) != len(want) {
			t.Fatalf("params %q, want %q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("params %q, want %q", got, want)
			}
		}
	})
}

// paramsInOrder returns the names and values of "params", in order (a map
// would lose repeated names).
func paramsInOrder(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []string
	depth := 0
	inParams := false
	key := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("token: %v in %q", err, b)
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' {
				depth++
				inParams = depth == 2 && key == "params"
			} else {
				depth--
				inParams = false
			}
			key = ""
		case string:
			switch {
			case inParams:
				out = append(out, v)
			case depth == 1 && key == "":
				key = v
			default:
				key = ""
			}
		}
	}
}
