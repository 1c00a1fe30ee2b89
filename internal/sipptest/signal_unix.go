//go:build unix

package sipptest

import (
	"os"
	"syscall"
)

// softStop asks SIPp to finish: on SIGUSR1 it places no new calls, lets the
// current ones end and exits, writing its final statistics.
func softStop(p *os.Process) error { return p.Signal(syscall.SIGUSR1) }
