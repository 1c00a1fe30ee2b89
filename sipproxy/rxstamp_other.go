//go:build !linux

package sipproxy

import (
	"net"
	"time"
)

const rxOOBSize = 0

// enableRxTimestamps: arrival stamps are read on Linux only; elsewhere
// overload control watches the run queue alone.
func enableRxTimestamps(*net.UDPConn) bool { return false }

func rxTimestamp([]byte) (time.Time, bool) { return time.Time{}, false }
