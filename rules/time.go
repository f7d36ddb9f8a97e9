package rules

import (
	"math"
	"sort"
	"time"
)

// A term of a time expression (a timestamp or a duration).
type termKind int

const (
	termNow termKind = iota
	termFirstSeen
	termLastSeen
	termLast      // last(typ)
	termDuration  // a duration literal
	termTimestamp // a timestamp literal
)

type term struct {
	sign int64 // +1 or -1
	kind termKind
	typ  string
	d    time.Duration
	t    time.Time
}

// timeCmp is a comparison of two time expressions that reads now: each
// side is a signed sum of terms, so the comparison reads
// k·now + c  OP  0 and can change only where k·now + c crosses 0.
type timeCmp struct{ left, right []term }

// form returns (k, c): the side is k·now + c, c in nanoseconds relative
// to in.Now (saturating: instants ~292 years away are far enough).
func form(ts []term, in *Input) (k, c int64) {
	for _, t := range ts {
		var v int64
		switch t.kind {
		case termNow:
			k += t.sign
			continue
		case termFirstSeen:
			v = int64(orEpoch(in.FirstSeen).Sub(in.Now))
		case termLastSeen:
			v = int64(orEpoch(in.LastSeen).Sub(in.Now))
		case termLast:
			at := epoch
			if ts := in.Times[t.typ]; len(ts) > 0 {
				at = ts[0]
			}
			v = int64(at.Sub(in.Now))
		case termDuration:
			v = int64(t.d)
		case termTimestamp:
			v = int64(t.t.Sub(in.Now))
		}
		if t.sign < 0 {
			v = satNeg(v)
		}
		c = satAdd(c, v)
	}
	return k, c
}

func satAdd(a, b int64) int64 {
	s := a + b
	if a > 0 && b > 0 && s < 0 {
		return math.MaxInt64
	}
	if a < 0 && b < 0 && s >= 0 {
		return math.MinInt64
	}
	return s
}

func satNeg(a int64) int64 {
	if a == math.MinInt64 {
		return math.MaxInt64
	}
	return -a
}

// NextChange is the earliest millisecond after in.Now at which the
// condition's result may change with no new event, only because time
// passes; false if it never does. Evaluated at any millisecond in
// [in.Now, NextChange) the result is the one at in.Now. The instants are:
//
//   - for each events(T, W) call and kept time t of T still in the
//     window, t + W (the instant t leaves it);
//   - for each comparison reading now (now shifted by literal durations,
//     against first_seen, last_seen, last(T) and literals, also shifted),
//     the instant x where both sides are equal: the result can change at
//     x (>=, <=, ==) or just after it (>, <, !=), so both x and x + 1ms
//     (x rounded down to the millisecond) are candidates.
//
// Candidates are a sound over-approximation: the scheduler wakes, the
// caller re-evaluates, and nothing happens if nothing changed. Consent
// expiries are the caller's: Input.Consent reads "expired" from the
// expiry on, and the caller schedules a wake-up at each expiry.
func (p *Program) NextChange(in *Input) (time.Time, bool) {
	var best time.Time
	found := false
	consider := func(at time.Time) {
		if at.After(in.Now) && (!found || at.Before(best)) {
			best, found = at, true
		}
	}
	for typ, ws := range p.windows {
		ts := in.Times[typ] // newest first
		for _, w := range ws {
			// The first to leave window w is the oldest time still in it.
			cutoff := in.Now.Add(-w)
			i := sort.Search(len(ts), func(i int) bool { return !ts[i].After(cutoff) })
			if i == 0 {
				continue // none in the window
			}
			leave := ts[i-1].Add(w).Truncate(time.Millisecond)
			consider(leave)
			consider(leave.Add(time.Millisecond))
		}
	}
	for _, c := range p.cmps {
		kl, cl := form(c.left, in)
		kr, cr := form(c.right, in)
		k := kl - kr
		if k == 0 {
			continue // the difference of both sides does not move with time
		}
		// k·x + (cl - cr) = 0 at x = (cr - cl) / k (relative to now).
		num := satAdd(cr, satNeg(cl))
		x := floorDiv(num, k)
		at := in.Now.Add(time.Duration(x)).Truncate(time.Millisecond)
		consider(at)
		consider(at.Add(time.Millisecond))
	}
	return best, found
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
