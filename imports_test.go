package sipasync

import (
	"os/exec"
	"strings"
	"testing"
)

// A user's own module cannot import this module's internal packages, so
// neither may cmd/sipasync nor the examples: everything they do must be
// reachable from public packages. (Their tests may use the project's test
// helpers: a user copies the program, not its test.)
func TestCommandsAndExamplesUsePublicPackagesOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`,
		"./cmd/...", "./examples/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list found %d packages under cmd/ and examples/, want at least 10:\n%s", len(lines), out)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, "github.com/sipasync/sipasync/internal/") {
				t.Errorf("%s imports %s: a user's module could not", fields[0], imp)
			}
		}
	}
}
