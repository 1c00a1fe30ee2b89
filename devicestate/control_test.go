package devicestate

import (
	"slices"
	"testing"
)

func TestDeviceNames(t *testing.T) {
	for in, want := range map[string][]string{
		"alice":                  {"alice"},
		"alice@example.com":      {"alice@example.com", "alice"},
		"sip:alice@example.com":  {"sip:alice@example.com", "alice@example.com", "alice"},
		"sips:alice@example.com": {"sips:alice@example.com", "alice@example.com", "alice"},
		"@example.com":           {"@example.com"},
	} {
		if got := deviceNames(in); !slices.Equal(got, want) {
			t.Errorf("deviceNames(%q) = %q, want %q", in, got, want)
		}
	}
}
