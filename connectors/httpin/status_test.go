package httpin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/schemas"
)

// A reserved event without what its type needs is rejected per event, with
// its reason, and goes to the dead-letter topic; a good one is written with
// its identifier normalised.
func TestStatusEventRejected(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.post(t, "/v1/events", demoKey, "application/json",
		`[{"id":"ok","type":"tag.added","identifiers":{"user_id":"u"},"properties":{"tag":"vip"}},`+
			`{"id":"bad","type":"tag.added","identifiers":{"user_id":"u"},"properties":{"tag":"big spender"}}]`)
	wantStatus(t, r, http.StatusBadRequest, CodeValidation)
	errs, _ := r.body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want one for the second event", r.body["errors"])
	}
	m := errs[0].(map[string]any)
	if got := fmt.Sprintf("%v:%v", m["index"], m["reason"]); got != "1:"+intake.ReasonInvalidStatusEvent || !strings.Contains(fmt.Sprint(m["message"]), "properties.tag") {
		t.Fatalf("error = %v, want index 1, reason %s and a message naming properties.tag", m, intake.ReasonInvalidStatusEvent)
	}
	dls := readTopic(t, e.brokers, schemas.TopicDeadLetter)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl, err := schemas.DecodeDeadLetter(dls[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Reason != intake.ReasonInvalidStatusEvent || dl.Row != 1 || !strings.Contains(string(dl.Payload), "big spender") {
		t.Fatalf("dead letter = %+v", dl)
	}

	r = e.post(t, "/v1/events", demoKey, "application/json",
		`{"id":"bounce","type":"identifier.invalidated","identifiers":{"email":"Ana@Example.com"},"properties":{"type":"email","value":"Ana@Example.com","reason":"hard_bounce"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	ev := readEvents(t, e.brokers)["bounce"]
	if ev == nil || ev.Properties["value"] != `"ana@example.com"` || ev.Properties["type"] != `"email"` {
		t.Fatalf("event = %+v, want properties.value normalised to ana@example.com", ev)
	}
}

// A status event changes what a person set on a profile: through ingest as
// through the status API it needs profiles:write. A key without it gets
// 403 for the whole request and nothing is written; its other events are
// accepted.
func TestStatusEventNeedsProfilesWrite(t *testing.T) {
	e := newEnv(t, Config{})
	for _, body := range []string{
		`{"id":"t1","type":"tag.added","identifiers":{"user_id":"u"},"properties":{"tag":"vip"}}`,
		`[{"id":"v1","type":"page.viewed","identifiers":{"user_id":"u"}},{"id":"b1","type":"blacklist.added","identifiers":{"user_id":"u"}}]`,
		`{"id":"c1","type":"consent.granted","identifiers":{"user_id":"u"},"properties":{"purpose":"big spender"}}`,
	} {
		r := e.post(t, "/v1/events", plainKey, "application/json", body)
		wantStatus(t, r, http.StatusForbidden, CodeForbidden)
		if r.body["required_scope"] != "profiles:write" {
			t.Fatalf("required_scope = %v", r.body["required_scope"])
		}
	}
	r := e.post(t, "/v1/events", plainKey, "application/json", `{"id":"v2","type":"page.viewed","identifiers":{"user_id":"u"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	r = e.post(t, "/v1/events", demoKey, "application/json", `{"id":"t2","type":"tag.added","identifiers":{"user_id":"u"},"properties":{"tag":"vip"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	evs := readEvents(t, e.brokers)
	if len(evs) != 2 || evs["v2"] == nil || evs["t2"] == nil {
		t.Fatalf("events written: %v, want v2 and t2 only", schemas.SortedKeys(evs))
	}
}
