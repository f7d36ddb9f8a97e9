package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/connectors/clickhouse"
	"github.com/rolodex/rolodex/connectors/clickhouse/clickhousetest"
	"github.com/rolodex/rolodex/connectors/httpin"
	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/processors/tags"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

const envAddr = "ROLODEX_CLICKHOUSE_ADDR"

// chDB opens ClickHouse and names a database of the test's own, dropped at
// the end unless the test failed. The sink creates it (it migrates).
func chDB(t *testing.T) (addr string, conn driver.Conn, db string) {
	t.Helper()
	addr = os.Getenv(envAddr)
	if addr == "" {
		t.Fatalf("%s is not set: this test needs a real ClickHouse server; run ./scripts/test, or first:\n"+
			`    ./scripts/clickhouse install && eval "$(./scripts/clickhouse start /tmp/ch-dev)"`, envAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(ctx, clickhouse.ConnConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	db = "rolodex_e2e_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept database %s on %s for inspection", db, addr)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		}
		conn.Close()
	})
	return addr, conn, db
}

// run starts fn in a goroutine; the returned stop cancels it and waits.
func run(t *testing.T, name string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("%s did not stop within 60s", name)
		}
	}
	t.Cleanup(stop)
	return stop
}

// person is one generated customer: the identifiers as a partner spells
// them, and as ingest normalises them.
type person struct {
	partner string
	raw     map[string]string
	norm    map[string]string
}

// sent is one event as posted, with what Rolodex must make of it.
type sent struct {
	body   map[string]any
	tenant string
	ev     *schemas.Event // what the identity stage folds in: normalised identifiers
}

// The whole path, each part over its real transport: events posted to the
// HTTP ingest API go to Kafka, the identity processor links their
// identifiers into profiles, the sink copies events, profiles and merges
// into ClickHouse. Then every event is there once, under the profile a
// plain union-find over the events' identifiers gives (merge protection
// off, so the partition into profiles is a function of the events alone),
// and every report equals the same reference.
func TestIngestToReports(t *testing.T) {
	// The identity stage folds status with a default tag and an exclusive
	// group.
	status := schemas.StatusConfig{Default: []string{"new"}, Groups: []schemas.TagGroup{{Name: "stage", Tags: []string{"lead", "customer", "churned"}, Exclusive: true}}}
	s := startStack(t, stackConfig{Status: status})
	conn, db, norm, post := s.conn, s.db, s.norm, s.post

	start := time.Now().UTC()
	evs := generate(t, norm, 7, 160, 700)
	// Batches of 25 per partner, some events sent twice (a partner's retry).
	byPartner := map[string][]map[string]any{}
	r := mrand.New(mrand.NewPCG(7, 8))
	posted := 0
	for _, e := range evs {
		p := e.tenant
		byPartner[p] = append(byPartner[p], e.body)
		if r.IntN(25) == 0 {
			byPartner[p] = append(byPartner[p], e.body)
		}
	}
	for _, bodies := range byPartner {
		posted += len(bodies)
	}
	for p, bodies := range byPartner {
		for i := 0; i < len(bodies); i += 25 {
			if code := post(p, bodies[i:min(i+25, len(bodies))]); code != http.StatusAccepted {
				t.Fatalf("POST %d events for %s: %d", min(25, len(bodies)-i), p, code)
			}
		}
	}
	// Rejected events: one per request (a batch with one is refused whole).
	bad := []map[string]any{
		{"id": "bad-1", "type": "page.viewed", "identifiers": map[string]string{}},
		{"id": "bad-2", "type": "page.viewed", "identifiers": map[string]string{"email": "not an email"}},
		{"id": "bad-3", "type": "page.viewed", "time": "yesterday", "identifiers": map[string]string{"user_id": "u-1"}},
	}
	for _, b := range bad {
		if code := post("demo", b); code != http.StatusBadRequest {
			t.Fatalf("POST %v: %d, want 400", b["id"], code)
		}
	}

	model := reference.NewIdentityWith(reference.Options{Status: status})
	accepted := make([]*schemas.Event, len(evs))
	for i, e := range evs {
		model.Add(e.ev)
		accepted[i] = e.ev
	}
	want := clickhousetest.NewWant(model, accepted, len(bad), start)
	wctx, wcancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer wcancel()
	if diff := want.Await(wctx, conn, db); diff != "" {
		t.Fatalf("ClickHouse never matched the reference; last difference: %s", diff)
	}
	s.stop()
	t.Logf("%d events (%d posted with retries), %d profiles, %d merges: every table and report matches",
		len(evs), posted, len(want.Profiles()), want.Merges())
}

// stackConfig says how startStack configures the stages.
type stackConfig struct {
	// Status is the identity and tag stages' status configuration.
	Status schemas.StatusConfig
	// Rules are written to rolodex.tag.rules before the tag stage starts.
	Rules []schemas.TagRule
	// Tick is the tag stage's tags.Config.Tick (0: its default).
	Tick time.Duration
}

// stack is Rolodex wired in one process, each part over its real
// transport: HTTP ingest into Kafka (kfake over TCP), the identity stage,
// the tag stage and the ClickHouse sink into a database of the test's own.
type stack struct {
	brokers []string
	conn    driver.Conn
	db      string
	norm    *normalize.Normalizer
	// post sends body to POST /v1/events with the partner's key
	// ("<partner>-key-1", every scope) and returns the status code. The
	// partners are demo and acme, each the tenant of its name.
	post func(partner string, body any) int
	// stop stops the sink, the tag stage and the identity stage, in this
	// order, and reports their errors (the test's cleanup does it too).
	stop func()
}

func startStack(t *testing.T, cfg stackConfig) *stack {
	t.Helper()
	addr, conn, db := chDB(t)
	const parts = 4
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, schemas.TopicEvents, schemas.TopicDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	admin, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "e2e-admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = kafkaclient.EnsureTopics(ctx, admin, 1, identity.Topics(parts)...)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	// The tag stage, after its rules are on their topic; the identity
	// stage, merge protection off.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	err = tags.EnsureTopics(ctx, admin, 1)
	for i := 0; err == nil && i < len(cfg.Rules); i++ {
		err = produceRule(ctx, admin, cfg.Rules[i])
	}
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tagProc, err := tags.New(tags.Config{Brokers: brokers, StorageDir: t.TempDir(), Status: cfg.Status, Tick: cfg.Tick, Logger: quiet},
		goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	stopTags := run(t, "tags", tagProc.Run)
	proc, err := identity.New(identity.ProcessorConfig{
		Engine:  identity.Config{Limits: map[string]int{}, DefaultLimit: 1 << 20, Status: cfg.Status},
		Brokers: brokers, StorageDir: t.TempDir(),
	}, goka.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	stopIdentity := run(t, "identity", proc.Run)

	// The sink.
	sink, err := clickhouse.NewSink(clickhouse.Config{
		Kafka:      kafkaclient.Config{Brokers: brokers, ClientID: "e2e-sink"},
		ClickHouse: clickhouse.ConnConfig{Addr: addr, Database: db},
		BatchRows:  2000, BatchInterval: 100 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	err = sink.Connect(ctx)
	cancel()
	if err != nil {
		sink.Close()
		t.Fatal(err)
	}
	stopSink := run(t, "sink", sink.Run)
	t.Cleanup(sink.Close)

	// HTTP ingest.
	reg, err := partners.New([]partners.Partner{
		// Status events need profiles:write.
		{Name: "demo", Tenant: "demo", ScopedKeys: partners.KeyList{{Key: "demo-key-1", Scopes: partners.AllScopes}}, RateLimit: partners.RateLimit{RPS: -1}},
		{Name: "acme", Tenant: "acme", ScopedKeys: partners.KeyList{{Key: "acme-key-1", Scopes: partners.AllScopes}}, RateLimit: partners.RateLimit{RPS: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{})
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafkaclient.NewClient(kafkaclient.Config{Brokers: brokers, ClientID: "e2e-ingest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	api, err := httpin.New(httpin.Config{Logger: quiet}, reg, intake.NewValidator(norm), intake.NewPublisher(producer), intake.NewMetrics(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	post := func(partner string, body any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+partner+"-key-1")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	return &stack{brokers: brokers, conn: conn, db: db, norm: norm, post: post,
		stop: func() { stopSink(); stopTags(); stopIdentity() }}
}

// produceRule writes rule to rolodex.tag.rules under its key, as the rules
// API does, and waits for Kafka's ack.
func produceRule(ctx context.Context, cl *kgo.Client, rule schemas.TagRule) error {
	v, err := json.Marshal(rule)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: schemas.TopicTagRules, Key: []byte(schemas.RuleKey(rule.Tenant, rule.ID)), Value: v}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("produce rule %s/%s v%d: %w", rule.Tenant, rule.ID, rule.Version, err)
	}
	return nil
}

// generate makes n events of people people, half per partner, over the
// last four days. Some carry a CRM id shared by two people, which merges
// their profiles.
func generate(t *testing.T, norm *normalize.Normalizer, seed uint64, people, n int) []*sent {
	t.Helper()
	r := mrand.New(mrand.NewPCG(seed, seed))
	ps := make([]person, people)
	for i := range ps {
		p := person{partner: []string{"demo", "acme"}[i%2], raw: map[string]string{
			"email":   fmt.Sprintf("Person%d@Example.ORG", i),
			"phone":   fmt.Sprintf("(11) 9%04d-%04d", 3100+i, 4700+(i*37)%5000),
			"user_id": fmt.Sprintf("u-%d", i),
		}, norm: map[string]string{}}
		for typ, v := range p.raw {
			nv, err := norm.Identifier(typ, v)
			if err != nil {
				t.Fatalf("generated %s %q does not normalise: %v", typ, v, err)
			}
			p.norm[typ] = nv
		}
		ps[i] = p
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	sources := []string{"web", "app", "crm", "whatsapp"}
	types := []string{"page.viewed", "form.submitted", "lead.created"}
	out := make([]*sent, 0, n)
	for i := 0; i < n; i++ {
		pi := r.IntN(people)
		p := ps[pi]
		tenant := p.partner // the partner's tenant has its name
		raw, nrm := map[string]string{}, map[string]string{}
		for _, typ := range []string{"email", "phone", "user_id"} {
			if r.IntN(3) == 0 {
				raw[typ], nrm[typ] = p.raw[typ], p.norm[typ]
			}
		}
		if len(raw) == 0 || r.IntN(8) == 0 {
			typ := []string{"email", "phone", "user_id"}[r.IntN(3)]
			raw[typ], nrm[typ] = p.raw[typ], p.norm[typ]
		}
		if r.IntN(15) == 0 {
			// A CRM lead id some people of one partner share.
			// persons 4k and 4k+2 (one partner), 4k+1 and 4k+3 (the other)
			crm := fmt.Sprintf("L-%d", (pi/4)%(people/8))
			raw["external:crm"], nrm["external:crm"] = crm, crm
		}
		tm := today.Add(-time.Duration(r.IntN(4)) * 24 * time.Hour).Add(time.Duration(r.IntN(86_400_000)) * time.Millisecond)
		if tm.After(time.Now()) {
			tm = tm.Add(-24 * time.Hour)
		}
		e := &sent{tenant: tenant}
		typ, source := types[r.IntN(len(types))], sources[r.IntN(len(sources))]
		id := fmt.Sprintf("ev-%d", i)
		e.body = map[string]any{"id": id, "type": typ, "time": tm.Format(time.RFC3339Nano), "source": source,
			"identifiers": raw, "traits": map[string]any{"n": i}}
		// A fifth are status events: tags (one exclusive group), the
		// blacklist, consent, an identifier marked invalid.
		var props map[string]string
		if r.IntN(5) == 0 {
			tag := []string{"vip", "lead", "customer", "churned", "new"}[r.IntN(5)]
			switch x := r.IntN(10); {
			case x < 4:
				typ, props = schemas.EventTagAdded, map[string]string{"tag": tag}
			case x < 6:
				typ, props = schemas.EventTagRemoved, map[string]string{"tag": tag}
			case x < 7:
				typ, props = []string{schemas.EventBlacklistAdded, schemas.EventBlacklistRemoved}[r.IntN(2)], map[string]string{"reason": "test"}
			case x < 9:
				typ, props = []string{schemas.EventConsentGranted, schemas.EventConsentRevoked}[r.IntN(2)], map[string]string{"purpose": "marketing"}
			default:
				idType := schemas.SortedKeys(nrm)[0]
				typ, props = schemas.EventIdentifierInvalidated, map[string]string{"type": idType, "value": nrm[idType], "reason": "hard_bounce"}
				props["value"] = raw[idType] // as the partner spells it: ingest normalises it
			}
			e.body["type"], e.body["properties"] = typ, props
		}
		var ids []schemas.Identifier
		for typ, v := range nrm {
			ids = append(ids, schemas.Identifier{Type: typ, Value: v})
		}
		schemas.SortIdentifiers(ids)
		e.ev = &schemas.Event{Tenant: tenant, ID: id, Type: typ, Time: tm, Source: source, Identifiers: ids}
		if props != nil {
			e.ev.Properties = map[string]string{}
			for k, v := range props {
				b, _ := json.Marshal(v)
				e.ev.Properties[k] = string(b)
			}
			if typ == schemas.EventIdentifierInvalidated {
				b, _ := json.Marshal(nrm[props["type"]])
				e.ev.Properties["value"] = string(b)
			}
		}
		out = append(out, e)
	}
	return out
}
