package workergroups

import (
	"log/slog"

	"github.com/benbjohnson/clock"
)

// DefaultQueue is the queue bound of a group whose Spec.Queue is zero,
// unless Options.Queue says otherwise.
const DefaultQueue = 1024

// Options configures a registry. The zero value is usable.
type Options struct {
	// Default is the default group (Kamailio's async_workers, with
	// async_nonblock and async_usleep, or a group spec named "default").
	// Its name is always "default"; zero Workers means 1 worker.
	Default Spec
	// Queue is the queue bound of groups whose Spec.Queue is zero;
	// zero means DefaultQueue.
	Queue int
	// Logger receives panics of tasks (with their stack) and tasks left
	// undone by Stop; nil means slog.Default().
	Logger *slog.Logger
	// Clock paces usleep (its Sleep is called before each task); nil means
	// the real clock. Tests inject a mock.
	Clock clock.Clock
}

// Option changes Options; pass them to New.
type Option func(*Options)

// WithOptions replaces all options at once.
func WithOptions(o Options) Option { return func(dst *Options) { *dst = o } }

// WithDefaultWorkers sets the default group's worker count
// (--async-workers N).
func WithDefaultWorkers(n int) Option { return func(o *Options) { o.Default.Workers = n } }

// WithDefault sets the whole default group spec; its name is ignored.
func WithDefault(s Spec) Option { return func(o *Options) { o.Default = s } }

// WithQueue sets the queue bound of groups that do not set their own.
func WithQueue(n int) Option { return func(o *Options) { o.Queue = n } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithClock sets the clock that paces usleep.
func WithClock(c clock.Clock) Option { return func(o *Options) { o.Clock = c } }
