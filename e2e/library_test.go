package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// A user builds a proxy in a module of their own: a copy of
// examples/resume404 in a fresh module outside this tree, requiring
// sipasync (replaced by this checkout), builds and answers SIPp's calls.
func TestExampleBuildsInAModuleOfItsOwn(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(root, "examples", "resume404", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/myproxy\n\ngo 1.26\n\nrequire github.com/sipasync/sipasync v0.0.0\n\n" +
		"replace github.com/sipasync/sipasync => " + root + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "myproxy")
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in a module of its own: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	bins["myproxy"] = bin
	p := startProxy(t, "myproxy", "--delay", "1s")
	res := run(t, p, sipptest.Options{Scenario: scenario("uac_404.xml"), Service: "bob", MaxCalls: 3, Rate: 10,
		Timeout: 30 * time.Second})
	sipptest.RequireSuccess(t, res, 3)
}
