package sipbench

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// RepoRoot returns dir (absolute), or the nearest directory at or above the working
// directory whose go.mod declares this module.
func RepoRoot(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			slices.Contains(strings.Fields(string(b)), "github.com/sipasync/sipasync") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run from inside the sipasync repository, or give --repo")
		}
	}
}
