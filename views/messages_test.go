package views

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

type memMessages struct {
	m     map[string]*schemas.MessageTable
	ready bool
}

func (m *memMessages) Message(k string) (*schemas.MessageTable, error) { return m.m[k], nil }
func (m *memMessages) Ready() bool                                     { return m.ready }

// GET /v1/messages/{id} answers the lifecycle's table value of the key's
// tenant: state, channel, bounce, recipient with the profile of its
// address, history with times, standing refusals; another tenant's
// message, an unknown one and one with no event are 404; a loading view
// 503.
func TestGetMessage(t *testing.T) {
	ana := id("email", "ana@example.com")
	node := schemas.NodeID("t1", ana)
	nodes := &memNodes{ready: true, m: map[string]*schemas.Node{
		node: {Tenant: "t1", Identifier: ana, Own: schemas.Contribution{Node: node, Identifier: ana, Version: 1}},
	}}
	bounced := &schemas.MessageTable{Tenant: "t1", MessageID: "camp/1",
		Events: []schemas.MessageEvent{
			{ID: "e1", Tenant: "t1", MessageID: "camp/1", State: schemas.MessageSent, Time: 1000, Channel: "email"},
			{ID: "e2", Tenant: "t1", MessageID: "camp/1", State: schemas.MessageBounced, Time: 2000, Channel: "email", Bounce: "hard"},
			{ID: "e3", Tenant: "t1", MessageID: "camp/1", State: schemas.MessageDeleted, Time: 3000, Channel: "email"},
		},
		State: schemas.MessageBounced, Bounce: "hard", Channel: "email",
		Recipient: []schemas.Identifier{id("user_id", "u-1"), ana},
		History: []schemas.HistoryEntry{
			{State: schemas.MessageDraft, Time: 1000, Event: "e1", How: schemas.HowImplied},
			{State: schemas.MessageSent, Time: 1000, Event: "e1", How: schemas.HowEvent},
			{State: schemas.MessageBounced, Time: 2000, Event: "e2", How: schemas.HowEvent, Bounce: "hard"},
			{State: schemas.MessageDeleted, Time: 3000, Event: "e3", How: schemas.HowRefused, From: schemas.MessageBounced, Reason: schemas.ReasonInvalidTransition},
		},
		Refused: map[string]schemas.MessageRefusal{"e3": {From: schemas.MessageBounced, Asked: schemas.MessageDeleted, Reason: schemas.ReasonInvalidTransition}},
	}
	refusedOnly := &schemas.MessageTable{Tenant: "t1", MessageID: "m2",
		Events:    []schemas.MessageEvent{{ID: "s1", MessageID: "m2", State: schemas.MessageSent, Time: 5000, Channel: "sms"}},
		Channel:   "sms",
		Recipient: []schemas.Identifier{id("phone", "+5511912345678")},
		History:   []schemas.HistoryEntry{{State: schemas.MessageSent, Time: 5000, Event: "s1", How: schemas.HowRefused, Reason: schemas.ReasonInvalidRecipient}},
		Refused:   map[string]schemas.MessageRefusal{"s1": {Asked: schemas.MessageSent, Reason: schemas.ReasonInvalidRecipient}},
	}
	msgs := &memMessages{ready: true, m: map[string]*schemas.MessageTable{
		schemas.MessageKey("t1", "camp/1"): bounced,
		schemas.MessageKey("t1", "m2"):     refusedOnly,
		schemas.MessageKey("t1", "empty"):  {Tenant: "t1", MessageID: "empty", Verdicts: map[string]schemas.RecipientVerdict{"x": {Invalid: true}}},
		schemas.MessageKey("t2", "m3"):     {Tenant: "t2", MessageID: "m3", Events: []schemas.MessageEvent{{ID: "x"}}, State: schemas.MessageDraft},
	}}
	reg, err := partners.New([]partners.Partner{{Name: "p1", Tenant: "t1", Keys: []string{"key-of-t1"}},
		{Name: "w1", Tenant: "t1", ScopedKeys: partners.KeyList{{Key: "writer-of-t1", Scopes: []partners.Scope{partners.ScopeEventsWrite}}}}})
	if err != nil {
		t.Fatal(err)
	}
	norm, _ := normalize.New(normalize.Config{})
	api, err := NewAPI(nodes, reg, norm, Config{Publisher: noPublisher{}, Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(mid, key string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/messages/"+url.PathEscape(mid), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var raw json.RawMessage
		if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
			t.Fatalf("%s: not JSON: %v", mid, err)
		}
		return res.StatusCode, raw
	}

	status, raw := get("camp/1", "key-of-t1")
	if status != 200 {
		t.Fatalf("camp/1: %d %s", status, raw)
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	want := Message{ID: "camp/1", State: "bounced", Channel: "email", Bounce: "hard", EventCount: 3,
		Recipient: &MessageRecipient{Address: &ana, ProfileID: node, Identifiers: []schemas.Identifier{ana, id("user_id", "u-1")}},
		History: []MessageStep{
			{State: "draft", Time: "1970-01-01T00:00:01Z", TimeMs: 1000, Event: "e1", How: "implied"},
			{State: "sent", Time: "1970-01-01T00:00:01Z", TimeMs: 1000, Event: "e1", How: "event"},
			{State: "bounced", Time: "1970-01-01T00:00:02Z", TimeMs: 2000, Event: "e2", How: "event", Bounce: "hard"},
			{State: "deleted", Time: "1970-01-01T00:00:03Z", TimeMs: 3000, Event: "e3", How: "refused", From: "bounced", Reason: "invalid_transition"},
		},
		Refusals: []MessageRefusal{{Event: "e3", From: "bounced", Asked: "deleted", Reason: "invalid_transition"}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("camp/1 =\n%+v\nwant\n%+v", m, want)
	}

	status, raw = get("m2", "key-of-t1")
	var m2 Message
	_ = json.Unmarshal(raw, &m2)
	if status != 200 || m2.State != "none" || m2.Channel != "sms" || m2.Recipient.Address.Value != "+5511912345678" || m2.Recipient.ProfileID != "" ||
		len(m2.Refusals) != 1 || m2.Refusals[0].From != "none" || m2.Refusals[0].Reason != "invalid_recipient" {
		t.Fatalf("m2: %d %s", status, raw)
	}

	for _, tt := range []struct {
		name, id, key string
		status        int
	}{
		{"unknown", "nope", "key-of-t1", 404},
		{"a verdict without its event", "empty", "key-of-t1", 404},
		{"another tenant's", "m3", "key-of-t1", 404},
		{"too long", strings.Repeat("m", 201), "key-of-t1", 400},
		{"white space around", " m2", "key-of-t1", 400},
		{"no profiles:read", "m2", "writer-of-t1", 403},
		{"no key", "m2", "", 401},
	} {
		if status, raw := get(tt.id, tt.key); status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, raw, tt.status)
		}
	}
	msgs.ready = false
	if status, _ := get("m2", "key-of-t1"); status != http.StatusServiceUnavailable {
		t.Fatalf("loading view answered %d", status)
	}
}
