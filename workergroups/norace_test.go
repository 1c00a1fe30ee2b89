//go:build !race

package workergroups

const raceEnabled = false
