package ingest

import (
	"testing"
	"time"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// BenchmarkStages runs the work the HTTP handler does for each request
// body, without HTTP and Kafka, on one goroutine: decode the array in one
// pass and validate and normalise, reusing the memory of the events of
// the body before (schemas.RawEventBuffer, intake.EventBuffer: as httpin
// does), encode the record. One op is one event; cpu-ns/event is the CPU time of
// the process (GC included) per event, steadier than ns/op on a shared
// machine.
//
//	go test -run '^$' -bench Stages -benchtime 100000x -cpuprofile /tmp/stages.cpu ./bench/ingest/
func BenchmarkStages(b *testing.B) {
	w, err := generate(max(b.N, 100), benchBatch, 1, "stages", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	norm, err := normalize.New(normalize.Config{DefaultRegion: "BR"})
	if err != nil {
		b.Fatal(err)
	}
	v := intake.NewValidator(norm)
	reg, err := partners.New([]partners.Partner{{Name: "bench", Tenant: benchTenant, Keys: []string{"stages-key-1"}, RateLimit: partners.RateLimit{RPS: -1}}})
	if err != nil {
		b.Fatal(err)
	}
	p := reg.All()[0]
	prepare()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := measure.ProcessCPU()
	defer func() {
		b.ReportMetric(float64((measure.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/event")
	}()
	n := 0
	var (
		buf   schemas.RawEventBuffer
		evBuf intake.EventBuffer
		evs   []*schemas.Event
	)
	for _, body := range w.bodies {
		raws, _, ok := buf.Decode(body, 1000)
		if !ok {
			b.Fatal("not decoded in one pass")
		}
		now := time.Now()
		evBuf.Release(evs)
		evs = evs[:0]
		for i := range raws {
			ev, _, rej := v.ValidateReusing(&evBuf, p, &raws[i], now)
			if rej != nil {
				b.Fatal(rej)
			}
			if _, err := intake.EventRecord(ev); err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
			if n++; n == b.N {
				return
			}
		}
	}
}
