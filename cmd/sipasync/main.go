// Command sipasync runs a registrar and stateful proxy with the default route
// set, on loopback by default:
//
//	go run ./cmd/sipasync
//
// See --help for the flags. Its admin listener (Prometheus /metrics, JSON-RPC
// control on /rpc) is on 127.0.0.1:9060; "sipasync ctl METHOD" calls it:
//
//	sipasync ctl tm.stats
//	sipasync ctl async.list
package main

import (
	"os"

	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/admin"
	"github.com/sipasync/sipasync/routes"
)

func main() {
	os.Exit(sipasync.Run(sipasync.Program{Name: "sipasync", Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr,
		Environ: os.Environ(), Admin: admin.DefaultAddr, Setup: func(a *sipasync.Server) error {
			if err := a.Routes.Failure("MISSED", routes.HandlerFunc(func(c *routes.Context) error {
				return nil // forward the failure response as it is
			})); err != nil {
				return err
			}
			return a.Routes.Request(a.Proxy.DefaultRoute(defaultOptions(a)))
		}}))
}
