package sipbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sipasync/sipasync/internal/sipptest"
)

// pprofMain is added to a program's package main when the runner builds it
// for profiling (go build -overlay), so that no program of the repository
// carries a profiling endpoint: with PprofAddrEnv set it serves
// net/http/pprof there.
// PprofAddrEnv names the environment variable that gives a program built
// with PprofOverlay the host:port of its pprof endpoint.
const PprofAddrEnv = "SIPBENCH_PPROF_ADDR"

const pprofMain = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("SIPBENCH_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// PprofOverlay writes the overlay that adds pprofMain to the package in
// pkgDir (absolute) and returns the overlay file's path and a cleanup. The
// files go to a temporary directory outside the module: a .go file left
// under --out (by default inside the repository) would join `./...`.
func PprofOverlay(pkgDir string) (string, func(), error) {
	work, err := os.MkdirTemp("", "sipbench-overlay-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(work) }
	src := filepath.Join(work, "zz_sipbench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofMain), 0o644); err != nil {
		cleanup()
		return "", nil, err
	}
	ov := map[string]map[string]string{"Replace": {filepath.Join(pkgDir, "zz_sipbench_pprof.go"): src}}
	b, err := json.Marshal(ov)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	path := filepath.Join(work, "overlay.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		cleanup()
		return "", nil, err
	}
	return path, cleanup, nil
}

func freeTCPPort() (int, error) { return sipptest.FreePort("tcp", sipptest.LoopbackIP) }

// Profiler is implemented by instances that serve pprof.
type Profiler interface {
	// PprofAddr is the host:port of the pprof endpoint ("" if none).
	PprofAddr() string
}

// FetchProfile saves /debug/pprof/NAME?QUERY from addr to path.
func FetchProfile(ctx context.Context, addr, name, query, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/%s?%s", addr, name, query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: 2 * time.Minute}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("pprof %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
