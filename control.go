package sipasync

import (
	"context"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/sipasync/sipasync/admin"
)

// The control methods, Kamailio-style module.command names: the core's
// here, and each part's own.
func (a *Server) registerControl(r *admin.RPC) error {
	type method struct {
		name, help string
		params     []string
		fn         admin.Func
	}
	ms := []method{
		{"core.uptime", "when the process started and for how long it runs", nil, a.rpcUptime},
		{"core.version", "sipasync version and VCS revision, Go and sipgo versions", nil, a.rpcVersion},
		{"core.reload", "reload what can change safely (log level, --event subscriptions) from the config file and environment, as SIGHUP", nil, a.rpcReload},
	}
	for _, m := range ms {
		if err := r.Register(m.name, m.help, m.params, m.fn); err != nil {
			return err
		}
	}
	// Each part registers its own methods (module.command).
	for _, reg := range []func(*admin.RPC) error{a.Proxy.RegisterControl, a.Async.Engine.RegisterControl,
		a.Async.Groups.RegisterControl, a.Bus.RegisterControl, a.Events.RegisterControl, a.DeviceState.RegisterControl} {
		if err := reg(r); err != nil {
			return err
		}
	}
	return nil
}

func (a *Server) rpcUptime(context.Context, json.RawMessage) (any, error) {
	up := time.Since(a.started)
	return map[string]any{"started": a.started.UTC().Format(time.RFC3339), "uptime": up.Round(time.Second).String(),
		"uptime_seconds": int64(up.Seconds())}, nil
}

// ModulePath is this module's path, as a program's build info names it.
const ModulePath = "github.com/sipasync/sipasync"

// BuildInfo says which sipasync a binary carries: the module version (the
// main module's, or the dependency's in a program of a user's own module;
// "(devel)" for a build of a checkout), the VCS revision and whether the
// tree had local changes (for a build of a checkout), and the Go and sipgo
// versions.
type BuildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Sipgo    string `json:"sipgo,omitempty"`
	OSArch   string `json:"os_arch"`
}

// ReadBuildInfo returns the BuildInfo of the running binary.
func ReadBuildInfo() BuildInfo {
	out := BuildInfo{Version: "(devel)", Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
	for _, m := range mods {
		switch m.Path {
		case ModulePath:
			if m.Version != "" {
				out.Version = m.Version
			}
		case "github.com/emiago/sipgo":
			out.Sipgo = m.Version
		}
	}
	if bi.Main.Path == ModulePath {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				out.Revision = s.Value
			case "vcs.modified":
				out.Modified = s.Value == "true"
			}
		}
	}
	return out
}

// Version is the sipasync module version of the running binary.
func Version() string { return ReadBuildInfo().Version }

// String is the --version line.
func (b BuildInfo) String() string {
	s := b.Version
	if b.Revision != "" {
		s += " (" + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	s += " " + b.Go + " " + b.OSArch
	if b.Sipgo != "" {
		s += " sipgo " + b.Sipgo
	}
	return s
}

func (a *Server) rpcVersion(context.Context, json.RawMessage) (any, error) {
	return ReadBuildInfo(), nil
}

func (a *Server) rpcReload(context.Context, json.RawMessage) (any, error) {
	rep, err := a.Reload()
	if err != nil {
		return nil, err
	}
	return rep, nil
}
