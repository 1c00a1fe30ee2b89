//go:build !unix

package sipptest

import "os"

// softStop kills the process where SIGUSR1 does not exist.
func softStop(p *os.Process) error { return p.Kill() }
