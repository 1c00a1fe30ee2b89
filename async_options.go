package sipasync

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/async"
	"github.com/sipasync/sipasync/workergroups"
)

// AsyncOptions are the async module's parameters, with Kamailio's names.
type AsyncOptions struct {
	Workers       int      // async_workers: size of the default group
	Groups        []string // async_workers_group specs
	MsTimer       int      // ms_timer: ms resolution of the ms forms; 0 = off
	ModuleWorkers int      // the async module's "workers": who runs timer resumes
	TkvGroup      string   // the group that runs event_route[core:tkv]
}

// Register adds the async flags.
func (f *AsyncOptions) Register(fs *pflag.FlagSet) {
	fs.IntVar(&f.Workers, "async-workers", 1, "workers of the default group (async_workers); runs task routes and data tasks")
	fs.StringArrayVar(&f.Groups, "async-workers-group", nil, `named worker group "name=abc;workers=4;nonblock=0;usleep=0" (async_workers_group); repeatable`)
	fs.IntVar(&f.MsTimer, "async-ms-timer", 0, "millisecond timer resolution for MsRoute/MsSleep (ms_timer), 1..1000; 0 = off, the ms forms fail")
	fs.IntVar(&f.ModuleWorkers, "async-module-workers", 0, "workers that run timer resumes of Route/MsRoute/Sleep (the async module's workers param); 0 = one per CPU")
	fs.StringVar(&f.TkvGroup, "async-tkv-group", "", `worker group for event_route[core:tkv] ("" = the default group)`)
}

// AsyncParts are the async engine's pieces built from the flags.
type AsyncParts struct {
	Groups *workergroups.Groups
	Engine *async.Engine
}

func (f *AsyncOptions) build(a *Server) (*AsyncParts, error) {
	if f.Workers < 1 {
		return nil, fmt.Errorf("%w: --async-workers must be >= 1", ErrUsage)
	}
	if f.MsTimer < 0 || f.MsTimer > 1000 {
		return nil, fmt.Errorf("%w: --async-ms-timer %d: want 0 (off) or 1..1000 ms", ErrUsage, f.MsTimer)
	}
	if f.ModuleWorkers < 0 {
		return nil, fmt.Errorf("%w: --async-module-workers must be >= 0", ErrUsage)
	}
	gs, err := workergroups.New(workergroups.WithDefaultWorkers(f.Workers), workergroups.WithLogger(a.Log))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	for _, s := range f.Groups {
		spec, err := workergroups.ParseSpec(s)
		if err != nil {
			return nil, fmt.Errorf("%w: --async-workers-group: %v", ErrUsage, err)
		}
		if _, err := gs.Add(spec); err != nil {
			return nil, fmt.Errorf("%w: --async-workers-group: %v", ErrUsage, err)
		}
	}
	e, err := async.New(async.Config{
		Table: a.Proxy.Transactions(), Routes: a.Routes, Runner: a.Proxy, Groups: gs,
		MsTimer: time.Duration(f.MsTimer) * time.Millisecond, ModuleWorkers: f.ModuleWorkers,
		TKVGroup: f.TkvGroup, Logger: a.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	e.TKVs().Add(a.Publisher.OnTKV)
	return &AsyncParts{Groups: gs, Engine: e}, nil
}

func (p *AsyncParts) stop(ctx context.Context) {
	p.Engine.Stop()
	_, _ = p.Groups.Stop(ctx)
}
