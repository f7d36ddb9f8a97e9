package fanout

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/schemas"
)

// Each benchmark handles b.N records in one pass, on a fresh embedded
// broker (started, with the topics, the subscriptions and the b.N
// records stored, before the timer): run them with -benchtime Nx, e.g.
// go test -run '^$' -bench . -benchtime 50000x ./bench/fanout/
// Besides ns/op they report records/s and cpu-ns/op (the CPU time of the
// whole process per record: broker, clients, delivery, receiver).

func benchEnv(b *testing.B, ds []schemas.FanoutDelivery) (*Env, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	e, err := Setup(ctx, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	if _, err := e.Store(ctx, ds); err != nil {
		b.Fatal(err)
	}
	return e, ctx
}

func report(b *testing.B, p measure.Phase) {
	b.ReportMetric(p.EventsPerSec, "records/s")
	b.ReportMetric(float64(p.CPUPerEvent.Nanoseconds()), "cpu-ns/op")
}

// BenchmarkPassthrough is the baseline: consume b.N deliveries, produce
// each unchanged, commit after the acks.
func BenchmarkPassthrough(b *testing.B) {
	e, ctx := benchEnv(b, Deliveries(b.N, true, 1, time.Now()))
	b.ResetTimer()
	p, err := e.Passthrough(ctx, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	report(b, p)
}

// BenchmarkKafkaDelivery: a new webhooks.Fanout until b.N Kafka
// subscriptions' records are on the out topics and their reports written.
func BenchmarkKafkaDelivery(b *testing.B) {
	e, ctx := benchEnv(b, Deliveries(b.N, true, 1, time.Now()))
	b.ResetTimer()
	p, _, err := e.KafkaDelivery(ctx, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	report(b, p)
}

// BenchmarkWebhookDelivery: a new webhooks.Fanout until the local
// receiver has b.N distinct webhook ids (the reports are waited for
// after the timer); conns is the TCP connections the receiver accepted.
// wired is the sender as Rolodex runs it (http.DefaultTransport: 2 idle
// connections kept per host, so nearly every request dials);
// pooled-256, not how Rolodex runs, caps the connections per host at 256
// and keeps them idle for reuse (requests beyond wait for one): what the
// connection churn costs. A sender goroutine per key in flight means
// thousands of requests at once, so without the cap a larger idle pool
// alone still dials for most of them.
func BenchmarkWebhookDelivery(b *testing.B) {
	for _, c := range []struct {
		name   string
		client *http.Client
	}{
		{"wired", nil},
		{"pooled-256", &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}},
	} {
		b.Run(c.name, func(b *testing.B) {
			e, ctx := benchEnv(b, Deliveries(b.N, false, 1, time.Now()))
			e.cfg.HTTPClient = c.client
			b.ResetTimer()
			p, _, err := e.WebhookDelivery(ctx, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			report(b, p)
			b.ReportMetric(float64(e.recv.conns.Load()), "conns")
		})
	}
}

// BenchmarkGroup: the fan-out group from the start of rolodex.fanout.input
// (the directory, then b.N topic events) until it has written their
// deliveries (deliveries/op: 3.3 per event); ns/op is per event.
func BenchmarkGroup(b *testing.B) {
	e, ctx := benchEnv(b, nil)
	want, err := e.StoreEvents(ctx, Events(b.N, 1, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	p, _, err := e.Group(ctx, b.N, len(want))
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	report(b, p)
	b.ReportMetric(float64(len(want))/float64(b.N), "deliveries/op")
}
