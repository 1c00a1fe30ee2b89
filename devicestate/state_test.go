package devicestate

import (
	"os"
	"strings"
	"testing"
)

// abbreviations for the table below, in enum order
var abbr = map[string]State{"UK": Unknown, "NI": NotInUse, "IU": InUse, "BY": Busy, "IV": Invalid,
	"UA": Unavailable, "RG": Ringing, "RI": RingInUse, "OH": OnHold}

// aggTable is the result of aggregating the row's state with the column's,
// written out by hand from ast_devstate_aggregate_add (main/devicestate.c):
// rank INVALID < UNKNOWN < UNAVAILABLE < NOT_INUSE < ONHOLD < RINGING <
// INUSE < BUSY < RINGINUSE, and RINGING with INUSE/ONHOLD/BUSY is RINGINUSE.
var aggTable = []string{
	//    UK NI IU BY IV UA RG RI OH
	"UK: UK NI IU BY UK UA RG RI OH",
	"NI: NI NI IU BY NI NI RG RI OH",
	"IU: IU IU IU BY IU IU RI RI IU",
	"BY: BY BY BY BY BY BY RI RI BY",
	"IV: UK NI IU BY IV UA RG RI OH",
	"UA: UA NI IU BY UA UA RG RI OH",
	"RG: RG RG RI RI RG RG RG RI RI",
	"RI: RI RI RI RI RI RI RI RI RI",
	"OH: OH OH IU BY OH OH RI RI OH",
}

var cols = []string{"UK", "NI", "IU", "BY", "IV", "UA", "RG", "RI", "OH"}

func TestAggregatePairs(t *testing.T) {
	for _, line := range aggTable {
		row, rest, _ := strings.Cut(line, ": ")
		for i, want := range strings.Fields(rest) {
			a, b := abbr[row], abbr[cols[i]]
			if got := AggregateOf(a, b); got != abbr[want] {
				t.Errorf("%s + %s = %s, want %s", a, b, got, abbr[want])
			}
			if got := AggregateOf(b, a); got != abbr[want] {
				t.Errorf("%s + %s = %s, want %s (order must not matter)", b, a, got, abbr[want])
			}
		}
	}
}

func TestAggregateCases(t *testing.T) {
	cases := []struct {
		name string
		in   []State
		want State
	}{
		{"nothing is INVALID", nil, Invalid},
		{"registered on A, in a call through B", []State{NotInUse, InUse}, InUse},
		{"only B knew it, B gone", []State{Unavailable}, Unavailable},
		{"one view is itself", []State{InUse}, InUse},
		{"in use on one node, ringing on another", []State{InUse, Ringing}, RingInUse},
		{"on hold and ringing", []State{OnHold, Ringing}, RingInUse},
		{"busy and ringing", []State{Busy, Ringing}, RingInUse},
		{"ringing twice is ringing", []State{Ringing, Ringing}, Ringing},
		{"free on one, gone on another", []State{NotInUse, Unavailable}, NotInUse},
		{"gone everywhere", []State{Unavailable, Unavailable}, Unavailable},
		{"in use beats on hold", []State{OnHold, InUse}, InUse},
		{"on hold beats free", []State{NotInUse, OnHold}, OnHold},
		{"ringing beats free", []State{NotInUse, Ringing, Unavailable}, Ringing},
		{"ringing, free, then in use", []State{Ringing, NotInUse, InUse}, RingInUse},
		{"in use, then ringing, then free", []State{InUse, Ringing, NotInUse}, RingInUse},
		{"unknown beats invalid only", []State{Invalid, Unknown}, Unknown},
		{"unavailable beats unknown", []State{Unknown, Unavailable}, Unavailable},
		{"out of range counts as invalid", []State{State(42), NotInUse}, NotInUse},
	}
	for _, c := range cases {
		if got := AggregateOf(c.in...); got != c.want {
			t.Errorf("%s: %v = %s, want %s", c.name, c.in, got, c.want)
		}
	}
}

// TestAggregateTableInREADME checks the table README.md documents, cell by
// cell and both ways round, so that the documentation cannot drift from the
// code.
func TestAggregateTableInREADME(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var header []State
	rows := 0
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case len(cells) == 10 && strings.HasPrefix(cells[0], "view 1"):
			for _, c := range cells[1:] {
				header = append(header, ParseMust(t, c))
			}
		case len(cells) == 10 && header != nil && strings.HasPrefix(cells[0], "**"):
			row := ParseMust(t, strings.Trim(cells[0], "*"))
			for i, c := range cells[1:] {
				want := ParseMust(t, c)
				if got := AggregateOf(row, header[i]); got != want {
					t.Errorf("README: %s + %s = %s, the code says %s", row, header[i], want, got)
				}
				if got := AggregateOf(header[i], row); got != want {
					t.Errorf("README: %s + %s = %s, the code says %s", header[i], row, want, got)
				}
			}
			rows++
		}
	}
	if len(header) != 9 || rows != 9 {
		t.Fatalf("README's aggregation table: %d columns, %d rows; want 9 and 9", len(header), rows)
	}
}

func TestStateNames(t *testing.T) {
	want := []string{"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}
	for i, w := range want {
		s := State(i)
		if s.String() != w {
			t.Errorf("State(%d) = %s, want %s (Asterisk's enum order)", i, s, w)
		}
		for _, in := range []string{w, strings.ToLower(w), strings.ReplaceAll(strings.ToLower(w), "_", " ")} {
			if got, err := ParseState(in); err != nil || got != s {
				t.Errorf("ParseState(%q) = %s, %v", in, got, err)
			}
		}
	}
	if _, err := ParseState("BUSYISH"); err == nil {
		t.Error("ParseState accepts an unknown name")
	}
	if got := ParseMust(t, "not in use"); !got.Free() || InUse.Free() || Unknown.Free() {
		t.Error("only NOT_INUSE is free")
	}
	var s State
	if err := s.UnmarshalText([]byte("ringinuse")); err != nil || s != RingInUse {
		t.Errorf("UnmarshalText: %s %v", s, err)
	}
	if b, _ := OnHold.MarshalText(); string(b) != "ONHOLD" {
		t.Errorf("MarshalText: %s", b)
	}
}

func ParseMust(t *testing.T, s string) State {
	t.Helper()
	v, err := ParseState(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMWI(t *testing.T) {
	if (MWI{New: 0, Old: 3}).Waiting() || !(MWI{New: 1}).Waiting() {
		t.Error("the lamp is on exactly when there are new messages")
	}
}

func TestKeyEscaping(t *testing.T) {
	for _, name := range []string{"alice", "alice@example.com", "+4930123", "PJSIP/alice", "a.b", "=41", "ü", "a b"} {
		k := devKey(name, "node-1")
		kind, got, node, err := parseKey(k)
		if err != nil || kind != "dev" || got != name || node != "node-1" {
			t.Errorf("%q → %q → %s %q %q %v", name, k, kind, got, node, err)
		}
		for _, c := range strings.TrimPrefix(strings.TrimSuffix(k, ".node-1"), "dev.") {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
				t.Errorf("%q: key %q has %q", name, k, c)
			}
		}
	}
	for _, bad := range []string{"dev.x", "dev.a=4.n", "dev.a=ZZ.n", "other.a.b", "node"} {
		if _, _, _, err := parseKey(bad); err == nil {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}
