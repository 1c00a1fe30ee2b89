// Command sipasync runs a registrar and stateful proxy with the default route
// set, on loopback by default:
//
//	go run ./cmd/sipasync
//
// See --help for the flags.
package main

import (
	"os"

	"github.com/sipasync/sipasync/internal/app"
	"github.com/sipasync/sipasync/routes"
)

func main() {
	os.Exit(app.Main("sipasync", os.Args[1:], os.Stderr, nil, func(a *app.App) error {
		if err := a.Routes.Failure("MISSED", routes.HandlerFunc(func(c *routes.Context) error {
			return nil // forward the failure response as it is
		})); err != nil {
			return err
		}
		return a.Routes.Request(a.Proxy.DefaultRoute(defaultOptions(a)))
	}))
}
