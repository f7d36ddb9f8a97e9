package fanout

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	fanoutproc "github.com/rolodex/rolodex/processors/fanout"
	"github.com/rolodex/rolodex/schemas"
)

// The workload's tenant, its publisher and the partners that subscribe.
const (
	Tenant    = "bench"
	Publisher = "autoexpress"
)

// Partners are the subscribing partners (each has an out topic).
var Partners = []string{"bank", "insurer", "fintech"}

// Topics are the publisher's two topics: car-chosen (every partner on its
// list; records carry the profile's name, city and email) and test-drive
// (bank and fintech; name only).
func Topics() []schemas.Topic {
	return []schemas.Topic{
		{Tenant: Tenant, Name: "car-chosen", Owner: Publisher, Description: "a customer chose a car", Allowed: Partners,
			IncludeProfile: []string{"traits.name", "traits.city", "identifiers.email"}},
		{Tenant: Tenant, Name: "test-drive", Owner: Publisher, Description: "a customer booked a test drive", Allowed: []string{"bank", "fintech"},
			IncludeProfile: []string{"traits.name"}},
	}
}

// Subscriptions are six live subscriptions, three on Kafka (ids k-...)
// and three webhooks (ids w-..., to url + "/<partner>"), each with its
// signing secret: per kind, bank and insurer on car-chosen, fintech on
// test-drive.
func Subscriptions(url string, seed uint64) []schemas.SubscriptionRecord {
	r := rand.New(rand.NewPCG(seed, 0x5ec7))
	topic := map[string]string{"bank": "car-chosen", "insurer": "car-chosen", "fintech": "test-drive"}
	var out []schemas.SubscriptionRecord
	for _, kafka := range []bool{true, false} {
		for _, p := range Partners {
			key := make([]byte, 32)
			for i := range key {
				key[i] = byte(r.IntN(256))
			}
			s := schemas.Subscription{Tenant: Tenant, Partner: p, Topic: topic[p], Kafka: kafka, Status: schemas.SubscriptionActive,
				CreatedAt: "2026-12-01T00:00:00.000Z"}
			if kafka {
				s.ID = "k-" + p
			} else {
				s.ID = "w-" + p
				s.Webhook = &schemas.SubscriptionHook{URL: url + "/" + p}
			}
			out = append(out, schemas.SubscriptionRecord{Subscription: s, Secret: "whsec_" + base64.StdEncoding.EncodeToString(key), Version: 1})
		}
	}
	return out
}

// ProfileKey returns the id of the i-th profile: 32 hex digits, like the
// identity stage's node ids.
func ProfileKey(i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("bench-fanout-profile-%d", i)))
	return hex.EncodeToString(sum[:16])
}

var (
	models = []string{"Tracker", "Onix", "Corolla Cross", "Compass", "HB20", "T-Cross"}
	colors = []string{"white", "silver", "black", "red", "blue"}
	cities = []string{"Campinas", "São Paulo", "Curitiba", "Recife", "Porto Alegre"}
)

// Deliveries returns n records of rolodex.fanout.deliveries as the
// fan-out group writes them, for the Kafka subscriptions (kafka) or the
// webhook ones: record i is event "<prefix>-<i>" of a profile drawn from
// n/2 (at least 1), for the subscriptions in turn, its body made by the
// group's own EventBody (~500 bytes: the event's nine properties and the
// profile fields its topic includes), each with a distinct webhook id.
func Deliveries(n int, kafka bool, seed uint64, now time.Time) []schemas.FanoutDelivery {
	r := rand.New(rand.NewPCG(seed, 0xfa40))
	prefix := "w"
	if kafka {
		prefix = "k"
	}
	topics := map[string]*schemas.Topic{}
	for _, t := range Topics() {
		topics[t.Name] = &t
	}
	var subs []schemas.Subscription
	for _, s := range Subscriptions("http://unused", seed) {
		if s.Subscription.Kafka == kafka {
			subs = append(subs, s.Subscription)
		}
	}
	profiles := max(1, n/2)
	at := now.UnixMilli()
	out := make([]schemas.FanoutDelivery, n)
	for i := range out {
		sub := subs[i%len(subs)]
		t := topics[sub.Topic]
		ev := event(r, fmt.Sprintf("%s-%d", prefix, i), t.Name, profiles, at)
		out[i] = schemas.FanoutDelivery{Kind: schemas.KindTopicEvent, Tenant: Tenant, Partner: sub.Partner, Subscription: sub.ID,
			Topic: t.Name, Kafka: kafka, ProfileID: ev.Profile.ID, EventID: ev.EventID, Type: ev.Type, At: at,
			WebhookID: fanoutproc.WebhookID(sub.ID, ev.EventID), Body: fanoutproc.EventBody(t, ev)}
	}
	return out
}

// event is a topic event of a profile drawn from profiles: nine
// properties, the profile's name, city and email.
func event(r *rand.Rand, eventID, topic string, profiles int, at int64) *schemas.FanoutEvent {
	k := r.IntN(profiles)
	id := ProfileKey(k)
	typ := map[string]string{"car-chosen": "car.chosen", "test-drive": "test_drive.booked"}[topic]
	ev := &schemas.FanoutEvent{Tenant: Tenant, Topic: topic, Publisher: Publisher, EventID: eventID, Type: typ,
		Time: at - int64(r.IntN(3600_000)),
		Properties: map[string]string{
			"model":       `"` + models[r.IntN(len(models))] + `"`,
			"price":       fmt.Sprint(90000 + r.IntN(150000)),
			"currency":    `"BRL"`,
			"dealer":      fmt.Sprintf(`"autoexpress-%d"`, r.IntN(40)),
			"financing":   fmt.Sprint(r.IntN(2) == 0),
			"stock_id":    fmt.Sprintf(`"STK-%08d"`, r.IntN(1e8)),
			"color":       `"` + colors[r.IntN(len(colors))] + `"`,
			"year":        fmt.Sprint(2024 + r.IntN(3)),
			"salesperson": fmt.Sprintf(`"seller-%03d"`, r.IntN(500)),
		},
		Profile: &schemas.FanoutProfile{ID: id, Tenant: Tenant,
			Traits:      map[string]string{"name": fmt.Sprintf(`"Person %d"`, k), "city": `"` + cities[k%len(cities)] + `"`},
			Identifiers: map[string][]string{"email": {fmt.Sprintf("person%d@example.com", k)}}},
	}
	return ev
}

// Events returns n topic events as rolodex.fanout.input carries them
// (ids "g-<i>"), of profiles drawn from n/2: two in three on car-chosen
// (four subscriptions: two Kafka, two webhooks), one in three on
// test-drive (two), so 3.3 deliveries per event on average.
func Events(n int, seed uint64, now time.Time) []*schemas.FanoutEvent {
	r := rand.New(rand.NewPCG(seed, 0xe7e7))
	out := make([]*schemas.FanoutEvent, n)
	for i := range out {
		topic := "car-chosen"
		if i%3 == 2 {
			topic = "test-drive"
		}
		out[i] = event(r, fmt.Sprintf("g-%d", i), topic, max(1, n/2), now.UnixMilli())
	}
	return out
}
