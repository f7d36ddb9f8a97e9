package httpin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rolodex/rolodex/schemas"
)

// shippedMappings reads the mappings of the built-in configuration
// (cmd/rolodex/defaults.yaml), the ones dev mode serves.
func shippedMappings(t *testing.T) map[string]*Mapping {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "cmd", "rolodex", "defaults.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Mappings map[string]*Mapping `yaml:"mappings"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sendgrid", "mailgun", "postmark"} {
		if c.Mappings[name] == nil {
			t.Fatalf("defaults.yaml has no mapping %q", name)
		}
	}
	return c.Mappings
}

func webhookPayload(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantMessageEvent is what a provider's event must become on rolodex.events.
type wantMessageEvent struct {
	typ, time, email           string
	messageID, providerEventID string
	bounce                     string // "" = no bounce property
}

func checkEvent(t *testing.T, evs map[string]*schemas.Event, id string, w wantMessageEvent) {
	t.Helper()
	ev := evs[id]
	if ev == nil {
		t.Fatalf("no event %q among %d", id, len(evs))
	}
	if ev.Type != w.typ {
		t.Errorf("%s: type %q, want %q", id, ev.Type, w.typ)
	}
	if got := ev.Time.UTC().Format(time.RFC3339Nano); got != w.time {
		t.Errorf("%s: time %s, want %s", id, got, w.time)
	}
	if len(ev.Identifiers) != 1 || ev.Identifiers[0] != (schemas.Identifier{Type: "email", Value: w.email}) {
		t.Errorf("%s: identifiers %v, want email:%s", id, ev.Identifiers, w.email)
	}
	prop := func(k string) string {
		v, ok := ev.Properties[k]
		if !ok {
			return ""
		}
		var s string
		if err := json.Unmarshal([]byte(v), &s); err != nil {
			t.Errorf("%s: property %s = %s, not a string", id, k, v)
		}
		return s
	}
	if got := prop("message_id"); got != w.messageID {
		t.Errorf("%s: message_id %q, want %q", id, got, w.messageID)
	}
	if got := prop("provider_event_id"); got != w.providerEventID {
		t.Errorf("%s: provider_event_id %q, want %q", id, got, w.providerEventID)
	}
	if got := prop("channel"); got != "email" {
		t.Errorf("%s: channel %q, want email", id, got)
	}
	if got := prop("bounce"); got != w.bounce {
		t.Errorf("%s: bounce %q, want %q", id, got, w.bounce)
	}
}

// TestProviderWebhooks posts the example payloads of docs/webhooks.md
// (testdata/webhooks) to the mappings the built-in configuration ships
// and checks the events on rolodex.events.
func TestProviderWebhooks(t *testing.T) {
	e := newEnv(t, Config{Mappings: shippedMappings(t)})
	for _, f := range []struct{ mapping, file string }{
		{"sendgrid", "sendgrid.json"},
		{"mailgun", "mailgun-failed.json"}, {"mailgun", "mailgun-opened.json"}, {"mailgun", "mailgun-temporary.json"},
		{"postmark", "postmark-bounce.json"}, {"postmark", "postmark-delivery.json"}, {"postmark", "postmark-spam.json"}, {"postmark", "postmark-unsubscribe.json"},
	} {
		r := e.post(t, "/v1/webhooks/"+f.mapping, demoKey, ContentJSON, webhookPayload(t, f.file))
		wantStatus(t, r, http.StatusAccepted, "")
		if f.file == "sendgrid.json" && r.body["accepted"] != float64(11) {
			t.Fatalf("sendgrid: accepted %v, want 11", r.body["accepted"])
		}
	}
	evs := readEvents(t, e.brokers)
	if len(evs) != 11+3+4 {
		t.Fatalf("%d events, want 18", len(evs))
	}
	const sgMsg = "14c5d75ce93" // the X-Message-Id: sg_message_id up to its first "."
	for id, w := range map[string]wantMessageEvent{
		"sg-ev-1":  {"message.sent", "2025-11-26T10:00:00Z", "ana@example.com", sgMsg, "sg-ev-1", ""},
		"sg-ev-2":  {"message.deferred", "2025-11-26T10:00:01Z", "ana@example.com", sgMsg, "sg-ev-2", ""},
		"sg-ev-3":  {"message.delivered", "2025-11-26T10:00:02Z", "ana@example.com", sgMsg, "sg-ev-3", ""},
		"sg-ev-4":  {"message.opened", "2025-11-26T10:01:00Z", "ana@example.com", sgMsg, "sg-ev-4", ""},
		"sg-ev-5":  {"message.clicked", "2025-11-26T10:01:10Z", "ana@example.com", sgMsg, "sg-ev-5", ""},
		"sg-ev-6":  {"message.unsubscribed", "2025-11-26T10:01:20Z", "ana@example.com", sgMsg, "sg-ev-6", ""},
		"sg-ev-7":  {"message.bounced", "2025-11-26T10:01:40Z", "bia@example.com", "2a7f3c9e1b", "sg-ev-7", "hard"},
		"sg-ev-8":  {"message.bounced", "2025-11-26T10:01:41Z", "caio@example.com", "campaign-7/caio", "sg-ev-8", "soft"}, // blocked; a custom arg message_id wins
		"sg-ev-9":  {"message.spam", "2025-11-26T10:01:42Z", "duda@example.com", "4c9f5e1a3d", "sg-ev-9", ""},
		"sg-ev-10": {"message.unsubscribed", "2025-11-26T10:01:43Z", "enzo@example.com", "5d0a6f2b4e", "sg-ev-10", ""},
		"sg-ev-11": {"sendgrid.dropped", "2025-11-26T10:01:44Z", "fabi@example.com", "6e1b7a3c5f", "sg-ev-11", ""},

		"G9Bn5sl1TC6nu79C8C0bwg": {"message.bounced", "2025-11-26T10:00:00.908Z", "gui@example.com", "20251126100000.1.AB12CD34@mg.example.com", "G9Bn5sl1TC6nu79C8C0bwg", "hard"},
		"Ase7i2zsRYeDXztHGENqRA": {"message.opened", "2025-11-26T10:01:40.5Z", "hana@example.com", "newsletter-12/hana", "Ase7i2zsRYeDXztHGENqRA", ""},
		"Fs7-5t81S2ebd_dUhnGnyA": {"message.deferred", "2025-11-26T10:03:20Z", "gui@example.com", "20251126100000.1.AB12CD34@mg.example.com", "Fs7-5t81S2ebd_dUhnGnyA", ""},

		"Bounce:4323372036854775807": {"message.bounced", "2025-11-26T14:00:00.273Z", "ivo@example.com", "883953f4-6105-42a2-a16a-77a8eac79483", "Bounce:4323372036854775807", "hard"},
		"Delivery:00000000-0000-0000-0000-000000000000:juca@example.com:2025-11-26T10:01:00Z": {"message.delivered", "2025-11-26T10:01:00Z", "juca@example.com", "onboarding-3/juca",
			"Delivery:00000000-0000-0000-0000-000000000000:juca@example.com:2025-11-26T10:01:00Z", ""},
		"SpamComplaint:42": {"message.spam", "2025-11-26T10:05:00Z", "juca@example.com", "onboarding-3/juca", "SpamComplaint:42", ""},
		"SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:lia@example.com:2025-11-26T10:10:00Z": {"message.unsubscribed", "2025-11-26T10:10:00Z", "lia@example.com",
			"883953f4-6105-42a2-a16a-77a8eac79483", "SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:lia@example.com:2025-11-26T10:10:00Z", ""},
	} {
		checkEvent(t, evs, id, w)
	}
	for id, ev := range evs {
		want := "postmark"
		switch {
		case strings.HasPrefix(id, "sg-"):
			want = "sendgrid"
		case !strings.Contains(id, ":"):
			want = "mailgun"
		}
		if ev.Source != want {
			t.Errorf("%s: source %q, want %q", id, ev.Source, want)
		}
	}
}

// TestProviderWebhookValueMaps checks the provider names that are not
// states of the machine: they become ordinary events, never a refusal of
// the whole batch.
func TestProviderWebhookValueMaps(t *testing.T) {
	ms := shippedMappings(t)
	for _, c := range []struct {
		mapping, payload, typ, bounce string
	}{
		{"mailgun", `{"event-data":{"id":"x","event":"failed","severity":"permanent","reason":"suppress-unsubscribe","recipient":"a@b.co"}}`, "mailgun.suppressed", "hard"},
		{"mailgun", `{"event-data":{"id":"x","event":"failed","severity":"permanent","reason":"old","recipient":"a@b.co"}}`, "message.bounced", "soft"},
		{"mailgun", `{"event-data":{"id":"x","event":"accepted","recipient":"a@b.co"}}`, "message.sent", ""},
		{"mailgun", `{"event-data":{"id":"x","event":"complained","recipient":"a@b.co"}}`, "message.spam", ""},
		{"mailgun", `{"event-data":{"id":"x","event":"stored","recipient":"a@b.co"}}`, "mailgun.stored", ""},
		{"postmark", `{"RecordType":"Bounce","ID":1,"Type":"SoftBounce","Email":"a@b.co"}`, "message.bounced", "soft"},
		{"postmark", `{"RecordType":"Bounce","ID":1,"Type":"Transient","Email":"a@b.co"}`, "message.deferred", ""},
		{"postmark", `{"RecordType":"Bounce","ID":1,"Type":"AutoResponder","Email":"a@b.co"}`, "postmark.Bounce:AutoResponder", ""},
		{"postmark", `{"RecordType":"Open","MessageID":"m","Recipient":"a@b.co","ReceivedAt":"2025-11-26T10:00:00Z"}`, "message.opened", ""},
		{"postmark", `{"RecordType":"Click","MessageID":"m","Recipient":"a@b.co","ReceivedAt":"2025-11-26T10:00:00Z","OriginalLink":"https://x"}`, "message.clicked", ""},
		{"postmark", `{"RecordType":"SubscriptionChange","MessageID":null,"Recipient":"a@b.co","ChangedAt":"2025-11-26T10:00:00Z","Origin":"Customer","SuppressSending":true,"SuppressionReason":"ManualSuppression"}`, "postmark.SubscriptionChange:true:ManualSuppression:Customer", ""},
		{"postmark", `{"RecordType":"SubscriptionChange","MessageID":"m","Recipient":"a@b.co","ChangedAt":"2025-11-26T10:00:00Z","Origin":"Recipient","SuppressSending":false,"SuppressionReason":null}`, "postmark.SubscriptionChange", ""},
		{"sendgrid", `{"event":"group_resubscribe","email":"a@b.co","sg_event_id":"x","timestamp":1}`, "sendgrid.group_resubscribe", ""},
	} {
		ev, err := ms[c.mapping].Apply([]byte(c.payload))
		if err != nil {
			t.Fatalf("%s %s: %v", c.mapping, c.payload, err)
		}
		var bounce string
		if b, ok := ev.Properties["bounce"]; ok {
			_ = json.Unmarshal(b, &bounce)
		}
		if ev.Type != c.typ || bounce != c.bounce || ev.ID == "" {
			t.Errorf("%s %s: type %q bounce %q id %q, want %q %q", c.mapping, c.payload, ev.Type, bounce, ev.ID, c.typ, c.bounce)
		}
	}
}

// TestProviderWebhookPartialFailure: the bad elements of a SendGrid batch
// (one that cannot be mapped, one that maps to an invalid message event)
// do not cost the good ones: the good ones are written, each bad one goes
// to the dead-letter topic with its index and reason, and the answer is
// 202 listing them (a provider cannot fix its payload and would retry a
// refused batch until it gave up). A body that is not a JSON array of
// payloads is still refused whole, and so is a lone bad payload.
func TestProviderWebhookPartialFailure(t *testing.T) {
	e := newEnv(t, Config{Mappings: shippedMappings(t)})
	body := `[{"email":"ana@example.com","timestamp":1764151200,"event":"delivered","sg_event_id":"ok-1","sg_message_id":"m1.x"},
	 {"email":"ana@example.com","timestamp":"yesterday","event":"open","sg_event_id":"bad-1","sg_message_id":"m1.x"},
	 {"email":"ana@example.com","timestamp":1764151200,"event":"open","sg_event_id":"bad-2","message_id":" m1 "},
	 {"email":"bia@example.com","timestamp":1764151300,"event":"bounce","type":"bounce","sg_event_id":"ok-2","sg_message_id":"m2.x"}]`
	r := e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, body)
	wantStatus(t, r, http.StatusAccepted, "")
	if r.body["accepted"] != float64(2) {
		t.Fatalf("accepted = %v, want 2; body %v", r.body["accepted"], r.body)
	}
	rejected, _ := r.body["rejected"].([]any)
	var answered []string
	for _, x := range rejected {
		m := x.(map[string]any)
		answered = append(answered, fmt.Sprintf("%v:%v:%v", m["index"], m["id"], m["reason"]))
		if m["message"] == "" {
			t.Errorf("rejected element without a message: %v", m)
		}
	}
	if got := strings.Join(answered, " "); got != "1:<nil>:mapping_failed 2:bad-2:invalid_message_event" {
		t.Fatalf("rejected (index:id:reason) = %q; body %v", got, r.body)
	}
	evs := readEvents(t, e.brokers)
	if len(evs) != 2 || evs["ok-1"] == nil || evs["ok-2"] == nil {
		t.Fatalf("events written: %v, want ok-1 and ok-2", evs)
	}
	var rows []string
	for _, rec := range readTopic(t, e.brokers, schemas.TopicDeadLetter) {
		dl, err := schemas.DecodeDeadLetter(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, fmt.Sprintf("%d:%s", dl.Row, dl.Reason))
		if dl.Row == 1 && !strings.Contains(dl.Message, `mapping "sendgrid": time: "yesterday" is not a Unix time`) {
			t.Errorf("dead letter message %q", dl.Message)
		}
		if dl.Row == 2 && !strings.Contains(string(dl.Payload), `"sg_event_id":"bad-2"`) {
			t.Errorf("dead letter payload %q, want the element as received", dl.Payload)
		}
	}
	sort.Strings(rows)
	if got := strings.Join(rows, " "); got != "1:mapping_failed 2:invalid_message_event" {
		t.Fatalf("dead letters (row:reason) = %q", got)
	}

	// Refused whole, nothing written: a lone bad payload, an empty batch,
	// a body that is not JSON.
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, `{"timestamp":1764151200,"event":"open","sg_event_id":"bad-3"}`), http.StatusBadRequest, CodeValidation)
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, `[]`), http.StatusBadRequest, CodeBadRequest)
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, `[{"a":1},`), http.StatusBadRequest, CodeBadRequest)
	// An element that is not an object is a malformed body, not a bad
	// event (schemathesis posted [[null, null]]).
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, `[{"timestamp":1764151200,"event":"open","sg_event_id":"ok-5","email":"a@b.co","sg_message_id":"m.1"},[null,null]]`), http.StatusBadRequest, CodeBadRequest)
	// A batch with no good element is answered 202 too: every element is
	// dead-lettered, and retrying would not change that.
	r = e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, `[{"timestamp":1764151200,"event":"open","sg_event_id":"bad-4"}]`)
	wantStatus(t, r, http.StatusAccepted, "")
	if r.body["accepted"] != float64(0) || len(r.body["rejected"].([]any)) != 1 {
		t.Fatalf("all-bad batch answered %v", r.body)
	}
	if n := len(readEvents(t, e.brokers)); n != 2 {
		t.Fatalf("%d events after the refused requests, want 2", n)
	}
	// POST /v1/events keeps all or nothing.
	wantStatus(t, e.post(t, "/v1/events", demoKey, ContentJSON, `[{"id":"ev-ok","type":"t","identifiers":{"user_id":"u"}},{"id":"ev-bad","type":"t"}]`), http.StatusBadRequest, CodeValidation)
	if n := len(readEvents(t, e.brokers)); n != 2 {
		t.Fatalf("%d events after a refused /v1/events batch, want 2", n)
	}
}

// TestProviderWebhookPartialUnavailable: a webhook batch with bad elements
// is answered 503 (the provider retries) when Kafka does not acknowledge
// its events and dead letters, never 202.
func TestProviderWebhookPartialUnavailable(t *testing.T) {
	c := newCluster(t)
	srv := newTestServer(t, c.ListenAddrs(), Config{Mappings: shippedMappings(t), WriteTimeout: 500 * time.Millisecond})
	c.Close()
	body := `[{"email":"ana@example.com","timestamp":1764151200,"event":"delivered","sg_event_id":"ok-1","sg_message_id":"m1.x"},
	 {"timestamp":1764151200,"event":"open","sg_event_id":"bad-1","sg_message_id":"m1.x"}]`
	r := post(t, srv.URL+"/v1/webhooks/sendgrid", demoKey, ContentJSON, body)
	wantStatus(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

// The vector of sendgrid/sendgrid-go helpers/eventwebhook/eventwebhook_test.go.
const (
	sgVectorKey       = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
	sgVectorTimestamp = "1588788367"
	sgVectorSignature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
	sgVectorPayload   = `{"category":"example_payload","event":"test_event","message_id":"message_id"}`
)

func TestSendGridSignatureVector(t *testing.T) {
	pub, err := parseSendGridKey(sgVectorKey)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderSendGridSignature, sgVectorSignature)
	h.Set(HeaderSendGridTimestamp, sgVectorTimestamp)
	if err := verifySendGrid(pub, h, []byte(sgVectorPayload)); err != nil {
		t.Fatalf("the reference vector does not verify: %v", err)
	}
	if err := verifySendGrid(pub, h, []byte(sgVectorPayload+" ")); err == nil {
		t.Fatal("a changed body verifies")
	}
	h.Set(HeaderSendGridTimestamp, "1588788368")
	if err := verifySendGrid(pub, h, []byte(sgVectorPayload)); err == nil {
		t.Fatal("a changed timestamp verifies")
	}
	if _, err := (&Signature{Scheme: SchemeSendGrid, Key: "bm90IGEga2V5"}).compile(); err == nil {
		t.Fatal("a key that is not DER compiles")
	}
}

// TestProviderSignaturesOverHTTP: a mapping with a signature scheme
// verifies it (403 bad_signature otherwise), and the provider can
// authenticate with HTTP Basic (the key as password).
func TestProviderSignaturesOverHTTP(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ms := shippedMappings(t)
	sg, mg := *ms["sendgrid"], *ms["mailgun"]
	sg.Signature = &Signature{Scheme: SchemeSendGrid, Key: base64.StdEncoding.EncodeToString(der)}
	const mgKey = "key-mailgun-signing-1"
	mg.Signature = &Signature{Scheme: SchemeMailgun, Key: mgKey}
	pm := ms["postmark"]
	e := newEnv(t, Config{Mappings: map[string]*Mapping{"sendgrid": &sg, "mailgun": &mg, "postmark": pm}})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("postmark:"+demoKey))

	body := webhookPayload(t, "sendgrid.json")
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	d := sha256.Sum256([]byte(ts + body))
	sig, err := ecdsa.SignASN1(rand.Reader, priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sgHeaders := []string{HeaderSendGridSignature, base64.StdEncoding.EncodeToString(sig), HeaderSendGridTimestamp, ts}
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, body), http.StatusForbidden, CodeBadSignature)
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", demoKey, ContentJSON, strings.Replace(body, "ana@", "eva@", 1), sgHeaders...), http.StatusForbidden, CodeBadSignature)
	wantStatus(t, e.post(t, "/v1/webhooks/sendgrid", "", ContentJSON, body, append(sgHeaders, "Authorization", basic)...), http.StatusAccepted, "")

	mgBody := func(ts int64, key string) string {
		tsText := strconv.FormatInt(ts, 10)
		token := "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(tsText + token))
		b := webhookPayload(t, "mailgun-failed.json")
		b = strings.Replace(b, `"timestamp": "1764151200"`, `"timestamp": "`+tsText+`"`, 1)
		return strings.Replace(b, "(computed by the test)", hex.EncodeToString(mac.Sum(nil)), 1)
	}
	now := time.Now().Unix()
	wantStatus(t, e.post(t, "/v1/webhooks/mailgun", demoKey, ContentJSON, mgBody(now, "another-key")), http.StatusForbidden, CodeBadSignature)
	wantStatus(t, e.post(t, "/v1/webhooks/mailgun", demoKey, ContentJSON, mgBody(now-3600, mgKey)), http.StatusForbidden, CodeBadSignature)
	wantStatus(t, e.post(t, "/v1/webhooks/mailgun", "", ContentJSON, mgBody(now, mgKey), "Authorization", basic), http.StatusAccepted, "")
	// The same signature block again (a replay within the tolerance) is
	// refused, with the event changed or not.
	replay := mgBody(now, mgKey)
	wantStatus(t, e.post(t, "/v1/webhooks/mailgun", demoKey, ContentJSON, replay), http.StatusForbidden, CodeBadSignature)
	wantStatus(t, e.post(t, "/v1/webhooks/mailgun", demoKey, ContentJSON, strings.Replace(replay, "G9Bn5sl1TC6nu79C8C0bwg", "forged-event", 1)), http.StatusForbidden, CodeBadSignature)

	// Postmark signs nothing: Basic auth is its credential.
	wantStatus(t, e.post(t, "/v1/webhooks/postmark", "", ContentJSON, webhookPayload(t, "postmark-bounce.json"),
		"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("postmark:wrong-key"))), http.StatusUnauthorized, CodeUnauthorized)
	wantStatus(t, e.post(t, "/v1/webhooks/postmark", "", ContentJSON, webhookPayload(t, "postmark-bounce.json"), "Authorization", basic), http.StatusAccepted, "")
	// Basic auth is for webhooks only.
	wantStatus(t, e.post(t, "/v1/events", "", ContentJSON, `{"id":"e","type":"t","identifiers":{"user_id":"u"}}`, "Authorization", basic), http.StatusUnauthorized, CodeUnauthorized)

	evs := readEvents(t, e.brokers)
	if len(evs) != 11+1+1 || evs["G9Bn5sl1TC6nu79C8C0bwg"] == nil || evs["Bounce:4323372036854775807"] == nil {
		t.Fatalf("%d events: %v", len(evs), evs)
	}
}
