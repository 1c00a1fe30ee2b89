package main

import (
	"github.com/sipasync/sipasync"
	"github.com/sipasync/sipasync/sipproxy"
)

func defaultOptions(a *sipasync.Server) sipproxy.DefaultOptions {
	return sipproxy.DefaultOptions{FailureRoute: "MISSED", OnMessage: a.RaiseSIPMessage}
}
