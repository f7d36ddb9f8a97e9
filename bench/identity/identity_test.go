package identity

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/rolodex/rolodex/internal/devbroker"
	"github.com/rolodex/rolodex/reference"
	"github.com/rolodex/rolodex/schemas"
)

// TestRunSane runs a small benchmark against its own broker and checks
// that the result adds up and that the table the identity stage left folds
// into exactly the profiles of the reference model (a plain union-find)
// over the events.
func TestRunSane(t *testing.T) {
	cluster, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const events, people, partitions = 2000, 400, 4
	dir := filepath.Join(t.TempDir(), "storage")
	cfg := Config{Events: events, Profiles: people, Partitions: partitions, Seed: 7, StorageDir: dir, Brokers: cluster.ListenAddrs()}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passthrough.EventsPerSec <= 0 || res.Identity.EventsPerSec <= 0 {
		t.Fatalf("rates must be positive: passthrough %.0f, identity %.0f", res.Passthrough.EventsPerSec, res.Identity.EventsPerSec)
	}
	if want := res.Identity.EventsPerSec / res.Passthrough.EventsPerSec; res.Ratio != want {
		t.Errorf("ratio = %v, want %v", res.Ratio, want)
	}
	if res.GokaFloor.Events != events || res.GokaFloor.EventsPerSec <= 0 || res.FloorRatio != res.GokaFloor.EventsPerSec/res.Passthrough.EventsPerSec {
		t.Errorf("goka floor: %d events at %.0f/s, ratio %v; want all %d events, a positive rate and its ratio", res.GokaFloor.Events, res.GokaFloor.EventsPerSec, res.FloorRatio, events)
	}
	if res.Embedded {
		t.Error("Embedded is set, but the run was given brokers")
	}
	if res.Identity.RestartKept <= 0 || res.Identity.RestartRepaired <= 0 || res.Identity.RestartRebuilt <= 0 {
		t.Errorf("restart times %v (kept), %v (repaired) and %v (rebuilt): want all measured", res.Identity.RestartKept, res.Identity.RestartRepaired, res.Identity.RestartRebuilt)
	}
	if got := res.Identity.Applied + res.Identity.Duplicates; got != events {
		t.Errorf("the identity stage handled %d events (%d applied, %d duplicates), want %d", got, res.Identity.Applied, res.Identity.Duplicates, events)
	}
	if res.Identity.Duplicates != int64(res.Duplicates) {
		t.Errorf("%d duplicates recognised, the stream has %d", res.Identity.Duplicates, res.Duplicates)
	}
	if res.LoopPerEvent <= 0 || res.Identity.Table.DiskBytes <= 0 || res.BytesPerProfile <= 0 {
		t.Errorf("loop records per event %.2f, disk %d B, %.0f B/profile: want all positive", res.LoopPerEvent, res.Identity.Table.DiskBytes, res.BytesPerProfile)
	}

	// The reference: the same events, generated again, through the
	// reference model.
	w, err := generate(events, people, 7, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference.NewIdentity()
	for _, ev := range w.events {
		ref.Add(ev)
	}
	want, idents := len(ref.Profiles()), len(ref.Nodes())
	if want != w.profiles || idents != w.identifiers {
		t.Fatalf("generator says %d profiles of %d identifiers, union-find %d of %d", w.profiles, w.identifiers, want, idents)
	}

	// The table the processor left, folded.
	profiles := map[string]*schemas.Profile{}
	nodes := 0
	if _, err := inspectTable(dir, partitions, func(key string, n *schemas.Node) {
		nodes++
		if n.IsRoot() {
			profiles[key] = schemas.Fold(key, n)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(profiles) != want {
		t.Errorf("the table folds into %d profiles, the union-find has %d", len(profiles), want)
	}
	if nodes != idents {
		t.Errorf("the table has %d nodes, the events %d identifiers", nodes, idents)
	}
	var ids, count int64
	for key, p := range profiles {
		if ref.Root(key) != ref.Root(p.ID) {
			t.Fatalf("profile %s is not in its own component", key)
		}
		for _, vs := range p.Identifiers {
			ids += int64(len(vs))
		}
		count += p.EventCount
	}
	if ids != int64(idents) {
		t.Errorf("the profiles hold %d identifiers, want %d", ids, idents)
	}
	if count != res.Identity.Applied {
		t.Errorf("the profiles count %d events, %d were applied", count, res.Identity.Applied)
	}
}

// TestGenerate checks the workload without a broker: records decode to
// the events, keyed by their primary identifier; identifiers are sorted
// and normalised; re-sends repeat earlier records; and the generator's
// expected profiles agree with the reference model (a plain union-find).
func TestGenerate(t *testing.T) {
	const n, people = 5000, 1200
	w, err := generate(n, people, 3, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.values) != n || len(w.keys) != n || len(w.events) != n {
		t.Fatalf("%d values, %d keys, %d events; want %d each", len(w.values), len(w.keys), len(w.events), n)
	}
	if w.people != people {
		t.Errorf("%d people appear, want all %d", w.people, people)
	}
	if w.duplicates < n/200 || w.duplicates > n/50 {
		t.Errorf("%d re-sent records, want about 1%% of %d", w.duplicates, n)
	}
	ref := reference.NewIdentity()
	ids := map[string]bool{}
	for i, ev := range w.events {
		got, err := schemas.DecodeEvent(w.values[i])
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got.ID != ev.ID || len(got.Identifiers) != len(ev.Identifiers) || string(w.keys[i]) != ev.Key() {
			t.Fatalf("record %d does not carry event %s keyed %s", i, ev.ID, ev.Key())
		}
		sorted := append([]schemas.Identifier(nil), ev.Identifiers...)
		schemas.SortIdentifiers(sorted)
		types := map[string]bool{}
		for j, id := range ev.Identifiers {
			if sorted[j] != id {
				t.Fatalf("event %s: identifiers not sorted: %v", ev.ID, ev.Identifiers)
			}
			if types[id.Type] {
				t.Fatalf("event %s: two identifiers of type %s", ev.ID, id.Type)
			}
			types[id.Type] = true
			if id.Type == schemas.IDPhone && (len(id.Value) != 14 || id.Value[:3] != "+55") {
				t.Fatalf("event %s: phone %q is not E.164", ev.ID, id.Value)
			}
		}
		ids[ev.Tenant+"/"+ev.Source+"/"+ev.ID] = true
		ref.Add(ev)
	}
	if len(ids) != n-w.duplicates {
		t.Errorf("%d distinct events, want %d records minus %d re-sends", len(ids), n, w.duplicates)
	}
	if got, idents := len(ref.Profiles()), len(ref.Nodes()); got != w.profiles || idents != w.identifiers {
		t.Errorf("union-find: %d profiles of %d identifiers; generator: %d of %d", got, idents, w.profiles, w.identifiers)
	}
	again, err := generate(n, people, 3, time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again.keys {
		if string(again.keys[i]) != string(w.keys[i]) {
			t.Fatalf("record %d: generated twice with one seed, keys differ", i)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"negative events", Config{Events: -1}, false},
		{"negative profiles", Config{Profiles: -1}, false},
		{"negative partitions", Config{Partitions: -1}, false},
		{"unknown tuning", Config{Tuning: "turbo"}, false},
		{"known tuning", Config{Tuning: TuningShipped}, true},
		{"broker without port", Config{Brokers: []string{"localhost"}}, false},
		{"broker", Config{Brokers: []string{"localhost:9092"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.setDefaults()
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestTunings checks that every tuning says what it changes and that a
// combination applies the changes of all its parts.
func TestTunings(t *testing.T) {
	for _, name := range Tunings() {
		if TuningDoc(name) == "" {
			t.Errorf("tuning %s has no doc", name)
		}
	}
	c, ok := lookupTuning("big-flush+no-compression+no-profiles")
	if !ok {
		t.Fatal("combination not found")
	}
	sc := c.saramaConfig()
	if sc == nil || sc.Producer.Flush.Frequency != 20*time.Millisecond || sc.Producer.Compression != sarama.CompressionNone || !c.skipProfiles {
		t.Fatalf("combination applied config %v, skip profiles %v; want flush 20ms, no compression, skip profiles", sc, c.skipProfiles)
	}
	if sc.Producer.RequiredAcks != sarama.WaitForAll {
		t.Error("the tuning's sarama config does not start from Rolodex's")
	}
	if n := len(c.processorOptions(t.TempDir())); n != 0 {
		t.Errorf("%d goka options, want none (the config goes through identity.ProcessorConfig.Sarama)", n)
	}
	if tunings[TuningShipped].saramaConfig() != nil || len(tunings[TuningShipped].processorOptions(t.TempDir())) != 0 {
		t.Error("shipped changes something")
	}
	if n := len(tunings["unordered"].processorOptions(t.TempDir())); n != 1 {
		t.Errorf("unordered adds %d goka options, want the plain producer", n)
	}
	for _, bad := range []string{"turbo", "big-flush+turbo", "+", ""} {
		if _, ok := lookupTuning(bad); ok {
			t.Errorf("lookupTuning(%q) found a tuning", bad)
		}
	}
}
