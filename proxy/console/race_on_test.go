//go:build race

package console_test

// raceEnabled: the browser tests skip under -race; the race run covers the Go side
// with the other tests, and a browser doubles its time for nothing the detector sees.
const raceEnabled = true
