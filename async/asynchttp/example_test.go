package asynchttp_test

import (
	"errors"
	"net/http"
	"time"

	"github.com/sipasync/sipasync/async/asynchttp"
	"github.com/sipasync/sipasync/routes"
)

// A request route parks each INVITE on a lookup; route[LOOKUP] runs with
// the answer, or at the timeout.
func ExampleClient_Do() {
	client, err := asynchttp.New(asynchttp.Options{MaxInFlight: 1024})
	if err != nil {
		panic(err)
	}
	defer client.Close()

	t := routes.NewTable()
	t.Expect(routes.KindNamed, "LOOKUP", "request_route")
	_ = t.Request(routes.HandlerFunc(func(c *routes.Context) error {
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/route?user="+c.Request().Recipient.User, nil)
		if err != nil {
			return err
		}
		err = client.Do(c, req, "LOOKUP", 500*time.Millisecond)
		if errors.Is(err, asynchttp.ErrBusy) {
			return routes.Error(503, "Service Unavailable", err)
		}
		return err // nil: parked; return and leave c alone
	}))
	_ = t.Route("LOOKUP", routes.HandlerFunc(func(c *routes.Context) error {
		r, ok := asynchttp.ResultOf(c)
		switch {
		case !ok:
			return c.Reply(500, "Server Internal Error")
		case r.Timeout:
			return c.Reply(504, "Server Time-out")
		case r.Err != nil || r.Status != http.StatusOK:
			return c.Reply(502, "Bad Gateway")
		}
		return c.Reply(486, "Busy Here") // decide from r.Body
	}))
}
