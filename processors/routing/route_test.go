package routing

import (
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

func TestRouteEvent(t *testing.T) {
	at := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	ev := func(typ, partner string, props map[string]string) *schemas.Event {
		return &schemas.Event{Tenant: tenant, ID: "e1", Type: typ, Time: at, Partner: partner, Properties: props}
	}
	id := map[string]string{PropLeadID: `"L1"`, "reason": `"duplicate"`, "body_partner": `"d9"`}

	in := RouteEvent(ev(schemas.EventLeadRejected, "d1", id), DefaultFollowTypes)
	if in == nil || in.Tenant != tenant || in.Feedback == nil || *in.Feedback != (schemas.LeadFeedback{LeadID: "L1", Partner: "d1", Reason: "duplicate"}) {
		t.Fatalf("rejection: %+v", in)
	}
	in = RouteEvent(ev(schemas.EventLeadAccepted, "d2", id), DefaultFollowTypes)
	if in == nil || in.Feedback == nil || !in.Feedback.Accepted || in.Feedback.Partner != "d2" {
		t.Fatalf("acceptance: %+v", in)
	}
	in = RouteEvent(ev("opportunity.updated", "crm", id), DefaultFollowTypes)
	if in == nil || in.FollowUp == nil || in.FollowUp.LeadID != "L1" || in.FollowUp.EventID != "e1" || in.FollowUp.Properties["reason"] != `"duplicate"` {
		t.Fatalf("follow-up: %+v", in)
	}
	for _, e := range []*schemas.Event{
		ev("opportunity.updated", "crm", id),                                    // not a follow type here
		ev(schemas.EventLeadAccepted, "d1", map[string]string{"reason": `"x"`}), // no lead id
		ev("page.viewed", "d1", id),
	} {
		if in := RouteEvent(e, []string{"lead.updated"}); in != nil {
			t.Fatalf("%s %v: routed %+v", e.Type, e.Properties, in)
		}
	}
}
