package schemas

import (
	"regexp"
	"testing"
)

func TestNodeID(t *testing.T) {
	a := NodeID("t1", Identifier{Type: "email", Value: "ana@example.com"})
	if !regexp.MustCompile(`^p_[0-9a-v]{26}$`).MatchString(a) {
		t.Fatalf("node id %q has the wrong form", a)
	}
	if a != NodeID("t1", Identifier{Type: "email", Value: "ana@example.com"}) {
		t.Fatal("node id is not stable")
	}
	for _, other := range []string{
		NodeID("t2", Identifier{Type: "email", Value: "ana@example.com"}),
		NodeID("t1", Identifier{Type: "user_id", Value: "ana@example.com"}),
		NodeID("t1", Identifier{Type: "email", Value: "ana@example.co"}),
		NodeID("t1e", Identifier{Type: "mail", Value: "ana@example.com"}),
	} {
		if other == a {
			t.Fatalf("distinct identifiers share node id %s", a)
		}
	}
	ev := &Event{Tenant: "t1", Identifiers: []Identifier{{Type: "email", Value: "ana@example.com"}}}
	if ev.Key() != a {
		t.Fatalf("event key %q, want the primary identifier's node %q", ev.Key(), a)
	}
}
