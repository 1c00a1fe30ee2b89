package sipproxy

import (
	"errors"

	"github.com/sipasync/sipasync/routes"
	"github.com/sipasync/sipasync/transaction"
)

// statusOf is the answer to a route's error: its routes.StatusError, 503
// for a limit of the transaction table (--max-parked: the caller may retry;
// the answer carries Retry-After), else 500.
func statusOf(err error) (int, string) {
	var se *routes.StatusError
	if !errors.As(err, &se) && errors.Is(err, transaction.ErrTooMany) {
		return 503, "Service Unavailable"
	}
	return routes.StatusOf(err)
}
