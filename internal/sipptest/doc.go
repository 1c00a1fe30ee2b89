// Package sipptest runs SIPp from Go tests and benchmark programs.
//
// The end-to-end tests and the benchmark runner drive the proxy with SIPp:
// a UAC scenario places calls (or REGISTERs, MESSAGEs, ...) at the proxy and
// a UAS scenario plays the called party. This package finds the sipp
// binary, picks free ports on 127.0.0.1, builds the command line, runs SIPp
// in the foreground with its statistics, error log and (optionally) message
// and response-time traces written to a scratch directory, and parses them
// into a Result once SIPp exits.
//
// Every process is bounded in time: SIPp gets -timeout (and, for clients,
// -timeout_error), and the Go side stops it with SIGUSR1 (SIPp's soft exit,
// which still writes the final statistics) and then kills it if the context
// ends or the time is up. StartT and RunT tie the process to a test and
// log diagnostics when the test fails.
//
// The scenario files live in testdata/sipp at the module root (see its
// README.md); Scenario returns their absolute paths. They are written to be
// dialog-correct through a record-routing stateful proxy and also work when
// the UAC talks to the UAS directly.
//
// Typical use in a test:
//
//	uas := sipptest.StartT(t, sipptest.Options{Scenario: sipptest.Scenario("uas_call.xml")})
//	res := sipptest.RunT(t, sipptest.Options{
//		Scenario: sipptest.Scenario("uac_call.xml"),
//		Target:   uas.Addr(), // or the proxy's address
//		Service:  "alice",
//		MaxCalls: 10,
//		Rate:     50,
//	})
//	sipptest.RequireSuccess(t, res, 10)
//
// Only loopback addresses are used: SIPp binds its SIP, media and control
// sockets to LocalIP (127.0.0.1 unless set otherwise).
package sipptest
