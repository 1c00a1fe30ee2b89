// Package workergroups runs tasks on named groups of workers, as Kamailio
// runs async_task_route(), async_task_data() and tkv events on the
// processes declared by async_workers=N and
// async_workers_group="name=abc;workers=4;nonblock=0;usleep=0".
//
// A Groups registry holds the default group (named "default", from
// --async-workers N) and named groups (from --async-workers-group SPEC,
// parsed by ParseSpec). A task is a plain func(); Submit queues it on a
// group.
//
// Guarantees:
//
//   - Bounded: a group has Workers goroutines and a FIFO queue of at most
//     Spec.Queue tasks, in both modes. Nothing else grows with the load.
//   - nonblock=0: Submit waits for room when the queue is full
//     (SubmitContext gives up when its context ends). nonblock=1: Submit
//     never waits; with the queue full it returns ErrOverload at once, for
//     the caller to answer 503 or return an error. This is Kamailio's
//     meaning too: nonblock there makes the write to the group's socket
//     (its queue) non-blocking.
//   - usleep=N: each worker pauses N microseconds before it takes a task,
//     so a worker starts at most one task per pause (Kamailio's throttle).
//     The pause uses the injected clock (WithClock).
//   - A task that panics is recovered, logged with its stack and counted
//     (Stats.Panicked); its worker goes on serving.
//   - Stop(ctx) stops taking tasks, runs what is queued until ctx ends and
//     returns the number of queued tasks it had to drop (also counted in
//     Stats.Undone and logged). Every task Submit accepted either runs or
//     is counted there; none is dropped silently.
//   - Submit does not allocate; rejecting does not allocate either.
//
// Design: the queue is a buffered channel in front of the workers, and the
// workers are goroutines of an ants pool of exactly Workers, each running
// one loop (sleep usleep, take a task, run it under recover) until Stop
// closes the queue. ants alone cannot give these semantics: its only queue
// is submitters parked on a condition variable (MaxBlockingTasks, one
// blocked goroutine per queued task, and an error instead of a wait past
// it), and its nonblocking mode has no queue at all, so nonblock=1 would
// reject as soon as every worker is busy. Handing each task to ants also
// costs a lock and a worker hand-off per task; the channel costs one send
// and one receive. The benchmarks (BenchmarkDispatch, results in
// benchmarks/RESULTS.md) compare this against raw ants, a plain
// channel-fed pool and go f().
//
// Fuzzing the spec parser:
//
//	go test -run '^$' -fuzz FuzzParseSpec -fuzztime 60s ./workergroups/
package workergroups
