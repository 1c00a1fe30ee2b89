// Package sipbench runs the SIPp benchmarks of benchmarks/RESULTS.md: for a
// scenario and a ladder of call rates it starts the proxy under test (a
// Target), the SIPp UAS (registered with the proxy) and the SIPp UAC, bounds
// every run in count and time, measures the proxy's CPU and memory from
// /proc, and reports per rate what SIPp saw. It also measures the memory
// per parked transaction. The command is benchmarks/runner.
//
// Everything runs on 127.0.0.1. Every process it starts is stopped by it:
// SIPp has its own -timeout and is soft-stopped (then killed) by sipptest;
// the proxy gets SIGTERM, then SIGKILL after a grace period, and is killed
// by the kernel if the runner dies (Pdeathsig).
package sipbench

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Role is what the proxy under test does with each call. A Target maps it
// to a program and its flags.
type Role string

// Roles of the scenarios.
const (
	// RolePark404: park every INVITE for Scenario.Park, then answer 404
	// (sipasync: examples/resume404).
	RolePark404 Role = "park-404"
	// RoleRelay: registrar + record-routing stateful proxy, no park
	// (sipasync: cmd/sipasync).
	RoleRelay Role = "relay"
	// RoleParkRelay: park every initial INVITE for Scenario.Park, then
	// look the user up and relay (sipasync: examples/asyncrelay).
	RoleParkRelay Role = "park-relay"
	// RoleShape: per-source leaky-bucket shaping before the relay (S5).
	RoleShape Role = "shape"
)

// Scenario is one benchmark scenario of the issue (S1..S5).
type Scenario struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Role        Role          `json:"role"`
	Park        time.Duration `json:"-"`
	ParkMS      int64         `json:"park_ms"`
	// MsTimer is the async ms timer resolution the proxy runs with (ms).
	MsTimer int `json:"ms_timer_ms,omitempty"`
	// UAC and UAS are scenario file names: "bench:NAME" is
	// benchmarks/sipp/NAME, anything else testdata/sipp/NAME. An empty
	// UAS means no called party (the proxy answers itself).
	UAC string `json:"uac"`
	UAS string `json:"uas,omitempty"`
	// User is the Request-URI user (-s) and, with a UAS, the registered
	// user.
	User string `json:"user"`
	// Pause is the UAC's -d (uac_call.xml: between ACK and BYE).
	Pause time.Duration `json:"-"`
	// ShapeRatio (S5): the shaper lets this fraction of the offered rate
	// through per source, so that requests are delayed by a growing
	// amount (up to Duration × (1/ShapeRatio − 1) at the end of a step).
	ShapeRatio float64 `json:"shape_ratio,omitempty"`
	// Ladder is the default rate ladder of a suite run (calls/s).
	Ladder []float64 `json:"-"`
	// Goal is the goal for sipasync's highest clean rate as a
	// multiple of Kamailio's (0: none).
	Goal float64 `json:"goal_ratio,omitempty"`
	// SipasyncOnly: Kamailio has no counterpart (S5).
	SipasyncOnly bool `json:"sipasync_only,omitempty"`
	// NotYet, when set, says why the scenario cannot run yet.
	NotYet string `json:"-"`
}

// CallLength is a rough upper estimate of one call's duration, used to
// size SIPp's call limit and time bounds.
func (s Scenario) CallLength() time.Duration {
	return s.Park + s.Pause + 200*time.Millisecond
}

var scenarios = []Scenario{
	{
		ID: "S1", Name: "async 404",
		Description: "INVITE → async.MsRoute(c, \"RESUME\", 100ms) → 404 → ACK; no UAS",
		Role:        RolePark404, Park: 100 * time.Millisecond, MsTimer: 10,
		UAC: "bench:uac_404.xml", User: "bob",
		Ladder: []float64{2000, 4000, 6000, 8000, 10000, 12000, 16000, 20000, 24000, 32000}, Goal: 2,
	},
	{
		ID: "S2", Name: "async relay",
		Description: "UAC → proxy (record-route, MsRoute 100 ms, lookup, relay) → UAS; ACK/BYE by loose routing",
		Role:        RoleParkRelay, Park: 100 * time.Millisecond, MsTimer: 10,
		UAC: "uac_call.xml", UAS: "uas_call.xml", User: "bob", Pause: 100 * time.Millisecond,
		Ladder: []float64{1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000}, Goal: 1.5,
	},
	{
		ID: "S3", Name: "plain relay",
		Description: "UAC → proxy (record-route, lookup, relay) → UAS; ACK/BYE by loose routing; no park",
		Role:        RoleRelay,
		UAC:         "uac_call.xml", UAS: "uas_call.xml", User: "bob", Pause: 100 * time.Millisecond,
		Ladder: []float64{1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000}, Goal: 1.5,
	},
	{
		ID: "S4", Name: "many parked",
		Description: "as S1 with a 2 s park: rate × 2 transactions parked at once",
		Role:        RolePark404, Park: 2 * time.Second, MsTimer: 10,
		UAC: "bench:uac_404.xml", User: "bob",
		Ladder: []float64{1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000}, Goal: 3,
	},
	{
		ID: "S5", Name: "shaping",
		Description: "examples/shaper: per-source leaky bucket (async.MsSleep) before the lookup and relay; one source " +
			"offering the step's rate, shaped to 0.8 of it, so each request waits a growing, exactly computed delay",
		Role: RoleShape, MsTimer: 1, ShapeRatio: 0.8, SipasyncOnly: true,
		// The longest wait at the end of a 20 s step: 20 s × (1/0.8 − 1).
		Park: 5 * time.Second,
		UAC:  "uac_call.xml", UAS: "uas_call.xml", User: "bob", Pause: 100 * time.Millisecond,
		Ladder: []float64{500, 1000, 2000, 3000},
	},
}

// Scenarios returns the known scenarios, S1 first.
func Scenarios() []Scenario {
	out := make([]Scenario, len(scenarios))
	for i, s := range scenarios {
		s.ParkMS = s.Park.Milliseconds()
		out[i] = s
	}
	return out
}

// LookupScenario returns the scenario with the given ID (case-insensitive).
func LookupScenario(id string) (Scenario, error) {
	var ids []string
	for _, s := range Scenarios() {
		if strings.EqualFold(s.ID, id) {
			return s, nil
		}
		ids = append(ids, s.ID)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (want one of %s)", id, strings.Join(ids, ", "))
}

// ScenarioPath resolves a scenario file name (see Scenario.UAC) against the
// repository root.
func ScenarioPath(repo, name string) string {
	if n, ok := strings.CutPrefix(name, "bench:"); ok {
		return filepath.Join(repo, "benchmarks", "sipp", n)
	}
	return filepath.Join(repo, "testdata", "sipp", name)
}
