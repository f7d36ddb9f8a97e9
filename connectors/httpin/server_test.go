package httpin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

const (
	demoKey   = "demo-key"
	signedKey = "signed-key"
	slowKey   = "slow-key-1"
	refKey    = "reference-key"
	readerKey = "reader-key-1"                   // every scope but events:write
	plainKey  = "plain-key-1"                    // a plain string key: events:write and profiles:read
	secret    = "whsec_c2VjcmV0LXNpZ25pbmcta2V5" // base64("secret-signing-key")
)

// crmLead is the worked example mapping of cmd/rolodex/defaults.yaml.
var crmLead = &Mapping{
	ID: "lead.id", Type: "=lead.created", Time: "lead.created_at", Source: "=crm",
	Identifiers: map[string]string{"email": "lead.contact.email", "phone": "lead.contact.phone", "external:crm": "lead.id"},
	Traits:      map[string]string{"name": "lead.contact.name", "city": "lead.address.city"},
	Properties:  map[string]string{"product": "lead.product.model"},
}

type env struct {
	srv     *httptest.Server
	cluster *kfake.Cluster
	brokers []string
}

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, schemas.TopicEvents, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	c := newCluster(t)
	e := &env{cluster: c, brokers: c.ListenAddrs()}
	e.srv = newTestServer(t, e.brokers, cfg)
	return e
}

func newTestServer(t *testing.T, brokers []string, cfg Config) *httptest.Server {
	t.Helper()
	reg, err := partners.New([]partners.Partner{
		{Name: "demo", Tenant: "demo", RateLimit: partners.RateLimit{RPS: -1}, ScopedKeys: partners.KeyList{{Key: demoKey, Scopes: partners.AllScopes}}},
		{Name: "plain", Tenant: "demo", Keys: []string{plainKey}, RateLimit: partners.RateLimit{RPS: -1}}, // events:write, profiles:read
		{Name: "signed", Tenant: "acme", Keys: []string{signedKey}, SigningSecret: secret},
		{Name: "slow", Tenant: "acme", Keys: []string{slowKey}, RateLimit: partners.RateLimit{RPS: 0.01, Burst: 2}},
		// The secret of the Standard Webhooks reference tests, without the
		// whsec_ prefix: base64 all the same.
		{Name: "reference", Tenant: "acme", Keys: []string{refKey}, SigningSecret: refSecret, RateLimit: partners.RateLimit{RPS: -1}},
		{Name: "reader", Tenant: "acme", RateLimit: partners.RateLimit{RPS: -1}, ScopedKeys: partners.KeyList{
			{Key: readerKey, Scopes: []partners.Scope{partners.ScopeProfilesRead, partners.ScopeProfilesWrite, partners.ScopeAdmin}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if cfg.Mappings == nil {
		cfg.Mappings = map[string]*Mapping{"crm-lead": crmLead}
	}
	s, err := New(cfg, reg, intake.NewValidator(n), intake.NewPublisher(cl), intake.NewMetrics(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *env) post(t *testing.T, path, key, contentType, body string, headers ...string) resp {
	t.Helper()
	return post(t, e.srv.URL+path, key, contentType, body, headers...)
}

func post(t *testing.T, url, key, contentType, body string, headers ...string) resp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("status %d: body is not JSON: %q", res.StatusCode, raw)
	}
	if res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type = %q", res.Header.Get("Content-Type"))
	}
	return resp{res.StatusCode, res.Header, m}
}

// readTopic reads every record currently in topic.
func readTopic(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	for int64(len(out)) < want {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: got %d of %d records", topic, len(out), want)
		}
		out = append(out, f.Records()...)
	}
	return out
}

func readEvents(t *testing.T, brokers []string) map[string]*schemas.Event {
	t.Helper()
	out := map[string]*schemas.Event{}
	for _, r := range readTopic(t, brokers, schemas.TopicEvents) {
		ev, err := schemas.DecodeEvent(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != ev.Key() {
			t.Errorf("record key %q, want %q", r.Key, ev.Key())
		}
		out[ev.ID] = ev
	}
	return out
}

func wantStatus(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %v", r.status, status, r.body)
	}
	if code != "" && r.body["error"] != code {
		t.Fatalf("error = %v, want %s; body %v", r.body["error"], code, r.body)
	}
	if code != "" && r.body["message"] == "" {
		t.Fatalf("error without a message: %v", r.body)
	}
}

func TestAcceptSingleAndBatch(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.post(t, "/v1/events", demoKey, "application/json",
		`{"id":"e-1","type":"page.viewed","time":"2026-11-22T10:00:00Z","source":"web","identifiers":{"email":"Ana@Example.com","phone":"+55 11 91234-5678","user_id":"u-1"},"traits":{"name":"Ana","city":"Campinas"},"properties":{"url":"/cars/42"}}`)
	wantStatus(t, r, http.StatusAccepted, "")
	if r.body["accepted"] != 1.0 || r.body["request_id"] == "" {
		t.Fatalf("body = %v", r.body)
	}
	r = e.post(t, "/v1/events", demoKey, "application/json; charset=utf-8",
		`[{"id":"e-2","type":"a","identifiers":{"user_id":"u-2"}},{"id":"e-3","type":"b","identifiers":{"email":"x@y.com","phone":"0000000000"}}]`)
	wantStatus(t, r, http.StatusAccepted, "")
	if r.body["accepted"] != 2.0 {
		t.Fatalf("body = %v", r.body)
	}
	if w, _ := r.body["warnings"].([]any); len(w) != 1 {
		t.Fatalf("warnings = %v, want the dropped placeholder phone", r.body["warnings"])
	}
	evs := readEvents(t, e.brokers)
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	e1 := evs["e-1"]
	if e1.Tenant != "demo" || e1.Source != "web" || e1.Traits["city"] != `"Campinas"` || len(e1.Identifiers) != 3 || e1.Identifiers[2].Value != "+5511912345678" {
		t.Fatalf("e-1 = %+v", e1)
	}
	if got := evs["e-3"].Identifiers; len(got) != 1 || got[0].Value != "x@y.com" {
		t.Fatalf("e-3 identifiers = %v", got)
	}
}

func TestBatchValidatedAsAWhole(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.post(t, "/v1/events", demoKey, "application/json",
		`[{"id":"ok","type":"a","identifiers":{"user_id":"u"}}, {"type":"a","identifiers":{"user_id":"u"}}, 17, {"id":"x","type":"a","identifiers":{"email":"null"}}]`)
	wantStatus(t, r, http.StatusBadRequest, CodeValidation)
	errs, _ := r.body["errors"].([]any)
	var got []string
	for _, x := range errs {
		m := x.(map[string]any)
		got = append(got, fmt.Sprintf("%v:%v", m["index"], m["reason"]))
	}
	if want := "1:missing_id 2:invalid_json 3:no_valid_identifier"; strings.Join(got, " ") != want {
		t.Fatalf("errors = %v, want %s", got, want)
	}
	if n := len(readTopic(t, e.brokers, schemas.TopicEvents)); n != 0 {
		t.Fatalf("%d events written, want none", n)
	}
	dls := readTopic(t, e.brokers, schemas.TopicDeadLetter)
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	var rows []string
	for _, rec := range dls {
		dl, err := schemas.DecodeDeadLetter(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if dl.SourceKind != schemas.SourceHTTP || dl.RequestID != r.body["request_id"] || dl.Partner != "demo" || dl.Tenant != "demo" || dl.Reason == "" || len(dl.Payload) == 0 {
			t.Fatalf("dead letter = %+v", dl)
		}
		rows = append(rows, fmt.Sprintf("%d:%s", dl.Row, dl.Reason))
	}
	slices.Sort(rows)
	if want := "1:missing_id 2:invalid_json 3:no_valid_identifier"; strings.Join(rows, " ") != want {
		t.Fatalf("dead letters (row:reason) = %v, want %s", rows, want)
	}
}

func TestStatusCodes(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 2048, MaxBatch: 3})
	ev := `{"id":"e","type":"t","identifiers":{"user_id":"u"}}`
	big := `{"id":"e","type":"t","identifiers":{"user_id":"u"},"traits":{"x":"` + strings.Repeat("a", 3000) + `"}}`
	now := time.Now()
	key, err := partners.ParseSigningSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	// The reference library's key for refSecret: its base64, decoded.
	refHMACKey, err := base64.StdEncoding.DecodeString(refSecret)
	if err != nil {
		t.Fatal(err)
	}
	signWith := func(key []byte, id string, ts time.Time, body string) []string {
		return []string{HeaderWebhookID, id, HeaderWebhookTimestamp, fmt.Sprint(ts.Unix()), HeaderWebhookSignature, Sign(key, id, ts, []byte(body))}
	}
	sig := func(id string, ts time.Time, body string) []string { return signWith(key, id, ts, body) }
	tests := []struct {
		name, key, ctype, body string
		headers                []string
		status                 int
		code                   string
	}{
		{name: "no key", ctype: "application/json", body: ev, status: 401, code: CodeUnauthorized},
		{name: "unknown key", key: "nope-nope-nope", ctype: "application/json", body: ev, status: 401, code: CodeUnauthorized},
		{name: "wrong content type", key: demoKey, ctype: "text/plain", body: ev, status: 415, code: CodeUnsupportedMedia},
		{name: "no content type", key: demoKey, body: ev, status: 415, code: CodeUnsupportedMedia},
		{name: "body too large", key: demoKey, ctype: "application/json", body: big, status: 413, code: CodeTooLarge},
		{name: "batch too long", key: demoKey, ctype: "application/json", body: "[" + strings.Repeat(ev+",", 3) + ev + "]", status: 413, code: CodeTooLarge},
		{name: "malformed JSON", key: demoKey, ctype: "application/json", body: `{"id":`, status: 400, code: CodeValidation},
		{name: "not an object", key: demoKey, ctype: "application/json", body: `"hello"`, status: 400, code: CodeBadRequest},
		{name: "empty body", key: demoKey, ctype: "application/json", body: ``, status: 400, code: CodeBadRequest},
		{name: "empty batch", key: demoKey, ctype: "application/json", body: `[]`, status: 400, code: CodeBadRequest},
		{name: "unsigned request of a signing partner", key: signedKey, ctype: "application/json", body: ev, status: 403, code: CodeBadSignature},
		{name: "bad signature", key: signedKey, ctype: "application/json", body: ev, headers: sig("m1", now, ev+" "), status: 403, code: CodeBadSignature},
		{name: "stale signature", key: signedKey, ctype: "application/json", body: ev, headers: sig("m1", now.Add(-6*time.Minute), ev), status: 403, code: CodeBadSignature},
		{name: "future signature", key: signedKey, ctype: "application/json", body: ev, headers: sig("m1", now.Add(6*time.Minute), ev), status: 403, code: CodeBadSignature},
		{name: "good signature", key: signedKey, ctype: "application/json", body: ev, headers: sig("m1", now, ev), status: 202},
		{name: "secret without whsec_ is base64", key: refKey, ctype: "application/json", body: ev, headers: signWith(refHMACKey, "m2", now, ev), status: 202},
		{name: "secret without whsec_ is not raw bytes", key: refKey, ctype: "application/json", body: ev, headers: signWith([]byte(refSecret), "m3", now, ev), status: 403, code: CodeBadSignature},
		{name: "CloudEvent bad specversion", key: demoKey, ctype: ContentCE, body: `{"specversion":"0.3","id":"c","type":"t","source":"s","data":{"identifiers":{"user_id":"u"}}}`, status: 400, code: CodeValidation},
		{name: "CloudEvents batch not an array", key: demoKey, ctype: ContentCEBatch, body: `{}`, status: 400, code: CodeBadRequest},
		{name: "unknown mapping", key: demoKey, ctype: "application/json", body: `{}`, status: 404, code: CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/v1/events"
			if tt.code == CodeNotFound {
				path = "/v1/webhooks/nope"
			}
			wantStatus(t, e.post(t, path, tt.key, tt.ctype, tt.body, tt.headers...), tt.status, tt.code)
		})
	}
	t.Run("GET", func(t *testing.T) {
		res, err := http.Get(e.srv.URL + "/v1/events")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "POST" {
			t.Fatalf("GET: %d %v", res.StatusCode, res.Header)
		}
	})
	t.Run("rate limited", func(t *testing.T) {
		var last resp
		for i := 0; i < 3; i++ { // burst 2
			last = e.post(t, "/v1/events", slowKey, "application/json", ev)
		}
		wantStatus(t, last, http.StatusTooManyRequests, CodeRateLimited)
		if ra := last.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("Retry-After = %q", ra)
		}
	})
}

func TestKafkaUnavailable(t *testing.T) {
	c := newCluster(t)
	srv := newTestServer(t, c.ListenAddrs(), Config{WriteTimeout: 500 * time.Millisecond})
	c.Close()
	r := post(t, srv.URL+"/v1/events", demoKey, "application/json", `{"id":"e","type":"t","identifiers":{"user_id":"u"}}`)
	wantStatus(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

// A produce request that Kafka holds without answering (on a real cluster:
// its leader died with the request in flight, until a new leader takes
// over, about broker.session.timeout.ms) is answered 503 at the write
// timeout. The idempotent producer keeps such a record until it can finish
// it; the answer does not wait for that.
func TestKafkaHoldsTheWrite(t *testing.T) {
	c := newCluster(t)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	srv := newTestServer(t, c.ListenAddrs(), Config{WriteTimeout: 300 * time.Millisecond})
	time.AfterFunc(10*time.Second, unblock) // so that a server that waits for the answer answers at all
	began := time.Now()
	r := post(t, srv.URL+"/v1/events", demoKey, "application/json", `{"id":"e","type":"t","identifiers":{"user_id":"u"}}`)
	took := time.Since(began)
	unblock()
	wantStatus(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if took > 5*time.Second {
		t.Fatalf("answered after %s; the write timeout is 300ms", took)
	}
}

func TestCloudEvents(t *testing.T) {
	e := newEnv(t, Config{})
	wantStatus(t, e.post(t, "/v1/events", demoKey, ContentCE,
		`{"specversion":"1.0","id":"ce-1","type":"com.example.signup","source":"/web","time":"2026-11-22T10:00:00Z","datacontenttype":"application/json","data":{"identifiers":{"email":"Bia@Example.com"},"traits":{"plan":"pro"}}}`),
		http.StatusAccepted, "")
	wantStatus(t, e.post(t, "/v1/events", demoKey, ContentCEBatch,
		`[{"specversion":"1.0","id":"ce-2","type":"t","source":"s","data":{"identifiers":{"user_id":"u-2"}}},{"specversion":"1.0","id":"ce-3","type":"t","source":"s","data":{"identifiers":{"user_id":"u-3"}}}]`),
		http.StatusAccepted, "")
	wantStatus(t, e.post(t, "/v1/events", demoKey, "application/json", `{"identifiers":{"whatsapp":"+55 11 91234-5678"},"properties":{"text":"oi"}}`,
		"ce-specversion", "1.0", "ce-id", "ce-4", "ce-type", "whatsapp.message", "ce-source", "wa", "ce-time", "2026-11-22T11:00:00Z"),
		http.StatusAccepted, "")
	r := e.post(t, "/v1/events", demoKey, "application/json", `{"identifiers":{"user_id":"u"}}`, "ce-specversion", "1.0", "ce-type", "t", "ce-source", "s")
	wantStatus(t, r, http.StatusBadRequest, CodeValidation)
	evs := readEvents(t, e.brokers)
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	c1 := evs["ce-1"]
	if c1.Type != "com.example.signup" || c1.Source != "/web" || c1.Identifiers[0].Value != "bia@example.com" || c1.Traits["plan"] != `"pro"` || c1.Time.Hour() != 10 {
		t.Fatalf("ce-1 = %+v", c1)
	}
	c4 := evs["ce-4"]
	if c4.Type != "whatsapp.message" || c4.Identifiers[0] != (schemas.Identifier{Type: "whatsapp", Value: "+5511912345678"}) || c4.Properties["text"] != `"oi"` {
		t.Fatalf("ce-4 = %+v", c4)
	}
}

func TestWebhookMapping(t *testing.T) {
	e := newEnv(t, Config{})
	payload := `{"event":"lead.created","lead":{"id":"L-1001","created_at":"2026-11-22T10:00:00Z","contact":{"name":"Ana Souza","email":"Ana@Example.com","phone":"(11) 91234-5678"},"address":{"city":"Campinas"},"product":{"model":"Compass"}}}`
	wantStatus(t, e.post(t, "/v1/webhooks/crm-lead", demoKey, "application/json", payload), http.StatusAccepted, "")
	wantStatus(t, e.post(t, "/v1/webhooks/crm-lead", demoKey, "application/json", `{"lead":{"contact":{"email":"a@b.com"}}}`), http.StatusBadRequest, CodeValidation)
	wantStatus(t, e.post(t, "/v1/webhooks/crm-lead", demoKey, "application/json", `{"lead":`), http.StatusBadRequest, CodeValidation)
	evs := readEvents(t, e.brokers)
	ev := evs["L-1001"]
	if ev == nil || len(evs) != 1 {
		t.Fatalf("events = %v", evs)
	}
	var ids []string
	for _, id := range ev.Identifiers {
		ids = append(ids, id.String())
	}
	if got, want := strings.Join(ids, " "), "email:ana@example.com phone:+5511912345678 external:crm:L-1001"; got != want {
		t.Fatalf("identifiers = %s, want %s", got, want)
	}
	if ev.Type != "lead.created" || ev.Source != "crm" || ev.Traits["name"] != `"Ana Souza"` || ev.Properties["product"] != `"Compass"` {
		t.Fatalf("event = %+v", ev)
	}
}

// A request without a partner's bearer key is answered 401 with the
// messages of partners.Authenticate, before anything else is checked.
func TestUnauthorized(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct{ authorization, message string }{
		{"", "missing credential: send Authorization: Bearer <partner key>"},
		{"Basic ZGVtbzpkZW1vLWtleQ==", "missing credential: send Authorization: Bearer <partner key>"},
		{"Bearer nope-nope-nope", "unknown partner key"},
		{"Bearer  " + demoKey + " ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.authorization, func(t *testing.T) {
			r := e.post(t, "/v1/events", "", "text/plain", `{}`, "Authorization", tt.authorization)
			if tt.message == "" { // authenticated: the content type is checked next
				wantStatus(t, r, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
				return
			}
			wantStatus(t, r, http.StatusUnauthorized, CodeUnauthorized)
			if r.body["message"] != tt.message || r.body["request_id"] != r.header.Get("X-Request-Id") || len(r.body) != 3 {
				t.Fatalf("body = %v, want message %q and the request id", r.body, tt.message)
			}
		})
	}
}

// Every ingest endpoint needs the scope events:write: a key without it is
// answered 403 forbidden naming the scope, and nothing is written.
func TestForbiddenWithoutEventsWrite(t *testing.T) {
	e := newEnv(t, Config{})
	ev := `{"id":"e-1","type":"page.viewed","identifiers":{"user_id":"u"}}`
	ce := `{"specversion":"1.0","id":"ce-1","type":"t","source":"/s","data":{"identifiers":{"user_id":"u"}}}`
	tests := []struct {
		name, path, ctype, body string
		headers                 []string
	}{
		{name: "event", path: "/v1/events", ctype: "application/json", body: ev},
		{name: "batch", path: "/v1/events", ctype: "application/json", body: "[" + ev + "]"},
		{name: "CloudEvent structured", path: "/v1/events", ctype: ContentCE, body: ce},
		{name: "CloudEvents batch", path: "/v1/events", ctype: ContentCEBatch, body: "[" + ce + "]"},
		{name: "CloudEvent binary", path: "/v1/events", ctype: "application/json", body: `{"identifiers":{"user_id":"u"}}`,
			headers: []string{"ce-specversion", "1.0", "ce-id", "ce-2", "ce-type", "t", "ce-source", "/s"}},
		{name: "webhook mapping", path: "/v1/webhooks/crm-lead", ctype: "application/json", body: `{"lead":{"id":"L-1","contact":{"email":"a@b.co"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, tt.path, readerKey, tt.ctype, tt.body, tt.headers...)
			wantStatus(t, r, http.StatusForbidden, CodeForbidden)
			if r.body["message"] != "this key lacks the scope events:write" || r.body["required_scope"] != "events:write" {
				t.Fatalf("body = %v", r.body)
			}
			// The same request with an events:write key is accepted.
			wantStatus(t, e.post(t, tt.path, demoKey, tt.ctype, tt.body, tt.headers...), http.StatusAccepted, "")
		})
	}
	// Six records: those of the six accepted requests, none of the refused.
	if recs := readTopic(t, e.brokers, schemas.TopicEvents); len(recs) != len(tests) {
		t.Fatalf("%d records on %s, want %d (the accepted requests' only)", len(recs), schemas.TopicEvents, len(tests))
	}
}
