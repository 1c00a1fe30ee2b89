//go:build race

package workergroups

const raceEnabled = true
