// Package rules is Rolodex's one rules engine: conditions in CEL
// (github.com/google/cel-go) over a documented profile environment, compiled
// once, checked, costed, and evaluated per profile. The tag stage uses it for
// rule tags; routing and fan-out filters will use it too. It imports only
// schemas.
//
// # Environment
//
// A condition is a CEL expression of type bool over these variables:
//
//	traits       map(string, dyn)          each trait's JSON value, decoded (numbers written as integers are int, others double)
//	identifiers  map(string, list(string)) identifier type → values
//	counters     map(string, int)          event type → how many events of that type
//	event_count  int                       how many events the profile has
//	first_seen   timestamp                 time of the earliest event (the epoch if none)
//	last_seen    timestamp                 time of the latest event (the epoch if none)
//	tags         list(string)              the tags that are on
//	consent      map(string, string)       purpose → granted, denied, revoked or expired (granted, past its expiry at now)
//	blacklisted  bool
//	channels     list(string)              channels with at least one valid identifier (email, sms, whatsapp, facebook)
//	now          timestamp                 the evaluation instant
//
// and two functions of the profile's events:
//
//	events(string type, duration window) -> int
//	    how many of the profile's events of that type have an event time t
//	    with t > now - window: an event leaves the window at exactly
//	    t + window (an event at now - window is out). An event time after
//	    now counts (intake accepts times up to 24h ahead).
//	last(string type) -> timestamp
//	    the time of the latest event of that type; the epoch,
//	    timestamp(0), if there is none, so
//	    last("purchase.completed") < now - duration("2160h") is true for a
//	    profile that never purchased.
//
// Reading a missing map key (traits.city on a profile without that trait) is
// a runtime error: Eval returns it and the caller leaves the tag as it was.
// Write has(traits.city) && traits.city == "Campinas" to mean false instead.
//
// # Refusals
//
// Compile refuses, with an *Error giving the line, column and reason:
// syntax errors (ReasonSyntax), type errors (ReasonType), a result that is
// not bool (ReasonResult), an estimated cost above MaxCost (ReasonCost), an
// events() or last() call the memory bound cannot decide (ReasonEvents), and
// a use of now whose change in time NextChange could not foresee
// (ReasonTime).
//
// # Memory bound
//
// Per profile and event type the state keeper keeps at most
// MaxEventsPerType latest event times. That decides events(T, W) OP k
// exactly when the comparison needs at most that many times: >= k and < k
// need k, > k, <= k, == k and != k need k+1. So every events() call must
// have a literal type and a literal duration("…") window and be one side of
// a comparison with an integer literal; last(T) needs a literal type and one
// time. Program.EventTypes says what a program needs per type.
//
// # Time
//
// Program.NextChange gives the earliest millisecond after now at which the
// condition may change with no new event, only because time passes (a view
// leaves a window, a purchase gets old). The truth of an accepted condition,
// evaluated on the millisecond grid, is constant between now and that
// instant. Consent expiries are the caller's: Input.Consent is already
// "expired" for a granted consent past its expiry at Now.
package rules
