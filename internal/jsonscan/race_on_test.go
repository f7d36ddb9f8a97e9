//go:build race

package jsonscan

// raceEnabled: the race detector slows the randomised comparison tests
// about tenfold; they run fewer cases under it.
const raceEnabled = true
