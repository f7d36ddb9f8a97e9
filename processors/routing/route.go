package routing

// The re-key step's logic (docs/routing.md, "How the router gets the
// profile"): feedback and follow-ups need no profile, so a stateless group
// re-keys them from rolodex.events by tenant onto rolodex.routing.input.
// Pure: no goka, no Kafka.

import (
	"slices"

	"github.com/rolodex/rolodex/schemas"
)

// DefaultFollowTypes is routing.follow_types' default: the later events
// about a lead that go to the partner holding it (seed 001's second flow).
var DefaultFollowTypes = []string{"lead.updated", "opportunity.updated"}

// PropLeadID is the property naming the lead an event is about.
const PropLeadID = schemas.PropLeadID

// RouteEvent is what the re-key step writes for one event of
// rolodex.events: feedback (lead.accepted, lead.rejected) or a follow-up
// (a type of followTypes) with properties.lead_id, as a RoutingInput keyed
// by the tenant; nil for any other event. The feedback's partner is the
// partner whose key sent the event (Event.Partner), never a field of the
// body.
func RouteEvent(ev *schemas.Event, followTypes []string) *schemas.RoutingInput {
	id := schemas.StringProperty(ev, PropLeadID)
	if id == "" || ev.Tenant == "" {
		return nil
	}
	switch {
	case ev.Type == schemas.EventLeadAccepted || ev.Type == schemas.EventLeadRejected:
		return &schemas.RoutingInput{Tenant: ev.Tenant, Feedback: &schemas.LeadFeedback{LeadID: id, Partner: ev.Partner,
			Accepted: ev.Type == schemas.EventLeadAccepted, Reason: schemas.StringProperty(ev, "reason")}}
	case slices.Contains(followTypes, ev.Type):
		return &schemas.RoutingInput{Tenant: ev.Tenant, FollowUp: &schemas.LeadFollowUp{LeadID: id, EventID: ev.ID, Type: ev.Type,
			Properties: ev.Properties}}
	}
	return nil
}
