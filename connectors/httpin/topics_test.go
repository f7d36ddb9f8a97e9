package httpin

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/schemas"
)

// memTopics is an in-memory intake.Topics (the binary wires the API's
// topic store; cmd/rolodex's dev test goes through it).
type memTopics struct {
	mu      sync.Mutex
	recs    map[string]schemas.TopicRecord
	loading bool
}

func (m *memTopics) Get(tenant, name string) (schemas.TopicRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loading {
		return schemas.TopicRecord{}, false, errors.New("still loading")
	}
	r, ok := m.recs[schemas.TopicKey(tenant, name)]
	return r, ok, nil
}

func (m *memTopics) put(tenant, name, owner string, deleted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[schemas.TopicKey(tenant, name)] = schemas.TopicRecord{Topic: schemas.Topic{Tenant: tenant, Name: name, Owner: owner}, Version: 1, Deleted: deleted}
}

// POST /v1/topics/{name}/events: the owner's events carry the topic into
// rolodex.events; another partner of the tenant gets 403, an unknown, a
// deleted or another tenant's topic 404, a store still loading 503, and
// nothing is written in any of those cases.
func TestTopicEvents(t *testing.T) {
	topics := &memTopics{recs: map[string]schemas.TopicRecord{}}
	topics.put("demo", "car-chosen", "demo", false)  // owned by demo (tenant demo)
	topics.put("demo", "plain-news", "plain", false) // owned by plain (tenant demo)
	topics.put("demo", "gone", "demo", true)         // deleted
	topics.put("acme", "acme-only", "reference", false)
	e := newEnv(t, Config{Topics: topics})

	// The owner: single and batch, each event with the topic.
	r := e.post(t, "/v1/topics/car-chosen/events", demoKey, "application/json",
		`{"id":"t-1","type":"car.chosen","identifiers":{"email":"ana@example.com"},"properties":{"model":"Tracker"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	r = e.post(t, "/v1/topics/car-chosen/events", demoKey, "application/json",
		`[{"id":"t-2","type":"car.chosen","identifiers":{"user_id":"u-2"}},{"id":"t-3","type":"car.chosen","identifiers":{"user_id":"u-3"}}]`)
	wantStatus(t, r, http.StatusAccepted, "")
	if r.body["accepted"] != 2.0 {
		t.Fatalf("body = %v", r.body)
	}
	// The owner "plain", a key with only events:write and profiles:read.
	r = e.post(t, "/v1/topics/plain-news/events", plainKey, "application/json", `{"id":"p-1","type":"news","identifiers":{"user_id":"u-9"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	// /v1/events still writes events without a topic.
	r = e.post(t, "/v1/events", demoKey, "application/json", `{"id":"n-1","type":"page.viewed","identifiers":{"user_id":"u-1"}}`)
	wantStatus(t, r, http.StatusAccepted, "")

	refused := []struct {
		what, path, key string
		status          int
		code            string
	}{
		{"another partner of the tenant", "/v1/topics/car-chosen/events", plainKey, http.StatusForbidden, CodeForbidden},
		{"the owner is plain, not demo", "/v1/topics/plain-news/events", demoKey, http.StatusForbidden, CodeForbidden},
		{"unknown topic", "/v1/topics/nope/events", demoKey, http.StatusNotFound, CodeNotFound},
		{"deleted topic", "/v1/topics/gone/events", demoKey, http.StatusNotFound, CodeNotFound},
		{"another tenant's topic", "/v1/topics/acme-only/events", demoKey, http.StatusNotFound, CodeNotFound},
		{"not a topic name", "/v1/topics/Bad%20Name/events", demoKey, http.StatusNotFound, CodeNotFound},
		{"no key", "/v1/topics/car-chosen/events", "", http.StatusUnauthorized, CodeUnauthorized},
		{"a key without events:write", "/v1/topics/car-chosen/events", readerKey, http.StatusForbidden, CodeForbidden},
	}
	for _, c := range refused {
		r := e.post(t, c.path, c.key, "application/json", `{"id":"x-1","type":"car.chosen","identifiers":{"user_id":"u-x"}}`)
		if r.status != c.status || r.body["error"] != c.code {
			t.Errorf("%s: status %d %v, want %d %s", c.what, r.status, r.body, c.status, c.code)
		}
	}
	topics.mu.Lock()
	topics.loading = true
	topics.mu.Unlock()
	r = e.post(t, "/v1/topics/car-chosen/events", demoKey, "application/json", `{"id":"x-2","type":"car.chosen","identifiers":{"user_id":"u-x"}}`)
	wantStatus(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	evs := readEvents(t, e.brokers)
	want := map[string]string{"t-1": "car-chosen", "t-2": "car-chosen", "t-3": "car-chosen", "p-1": "plain-news", "n-1": ""}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d (nothing of the refused requests): %v", len(evs), len(want), evs)
	}
	for id, topic := range want {
		ev := evs[id]
		if ev == nil || ev.Topic != topic {
			t.Errorf("event %s = %+v, want topic %q", id, ev, topic)
		}
	}
	if evs["t-1"].Tenant != "demo" || evs["t-1"].Partner != "demo" || evs["t-1"].Properties["model"] != `"Tracker"` {
		t.Errorf("t-1 = %+v", evs["t-1"])
	}
	if dls := readTopic(t, e.brokers, schemas.TopicDeadLetter); len(dls) != 0 {
		t.Errorf("%d dead letters, want none (a refused request is answered, not dead-lettered)", len(dls))
	}
}

// Without a topic store the route answers 503 and writes nothing.
func TestTopicEventsWithoutStore(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.post(t, "/v1/topics/car-chosen/events", demoKey, "application/json", `{"id":"x-1","type":"a","identifiers":{"user_id":"u"}}`)
	wantStatus(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if n := len(readTopic(t, e.brokers, schemas.TopicEvents)); n != 0 {
		t.Fatalf("%d events written", n)
	}
	var _ intake.Topics = (*memTopics)(nil)
}
