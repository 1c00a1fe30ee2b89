package main

import (
	"github.com/sipasync/sipasync/internal/app"
	"github.com/sipasync/sipasync/sipproxy"
)

func defaultOptions(a *app.App) sipproxy.DefaultOptions {
	return sipproxy.DefaultOptions{FailureRoute: "MISSED", OnMessage: a.RaiseSIPMessage}
}
