package devicestate

import "testing"

func TestKVValuesRoundTrip(t *testing.T) {
	for _, s := range []State{NotInUse, InUse, Ringing, Unavailable} {
		got, err := decodeDevice(encodeDevice(s))
		if err != nil || got != s {
			t.Errorf("device %s: got %s, %v", s, got, err)
		}
	}
	mb := mwiValue{New: 2, Old: 5, T: 1_700_000_000_000}
	if got, err := decodeMailbox(encodeMailbox(mb)); err != nil || got != mb {
		t.Errorf("mailbox: got %+v, %v", got, err)
	}
	hb := heartbeat{T: 1, Exp: 15000, Boot: "ab12"}
	if got, err := decodeHeartbeat(encodeHeartbeat(hb)); err != nil || got != hb {
		t.Errorf("heartbeat: got %+v, %v", got, err)
	}
	for _, bad := range []string{`{"new":-1,"old":0}`, `{"new":`, `7`} {
		if _, err := decodeMailbox([]byte(bad)); err == nil {
			t.Errorf("mailbox %s: no error", bad)
		}
	}
	if _, err := decodeDevice([]byte("NOPE")); err == nil {
		t.Error("device NOPE: no error")
	}
	if _, err := decodeHeartbeat([]byte("{")); err == nil {
		t.Error("heartbeat {: no error")
	}
}
