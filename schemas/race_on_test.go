//go:build race

package schemas

// raceEnabled: the race detector slows the randomised comparison tests
// about tenfold; they run fewer cases under it.
const raceEnabled = true
