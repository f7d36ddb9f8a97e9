package tags

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// Tenant is the tenant of every generated profile and rule.
const Tenant = "bench"

// ExampleRules are docs/tags.md's examples, one rule each, as a tenant
// would write them.
func ExampleRules() []schemas.TagRule {
	return []schemas.TagRule{
		{Tenant: Tenant, ID: "engaged", Tag: "engaged", Condition: `events("page.viewed", duration("168h")) >= 3`, Enabled: true, Version: 1},
		{Tenant: Tenant, ID: "lapsed", Tag: "lapsed", Condition: `last("purchase.completed") < now - duration("2160h")`, Enabled: true, Version: 1},
		{Tenant: Tenant, ID: "local", Tag: "local", Condition: `traits.city == "Campinas" && "email" in channels`, Enabled: true, Version: 1},
		{Tenant: Tenant, ID: "lead", Tag: "lead", Condition: `counters["form.submitted"] > 0 && !blacklisted`, Enabled: true, Version: 1},
	}
}

// ChangedRules is ExampleRules with the first rule changed (version 2):
// 5 page views in 7 days instead of 3, so the tag leaves the profiles
// with 3 or 4 and every other profile keeps its tags.
func ChangedRules() []schemas.TagRule {
	rs := ExampleRules()
	rs[0].Condition = `events("page.viewed", duration("168h")) >= 5`
	rs[0].Version = 2
	return rs
}

// event types and their shares of a profile's events.
var eventTypes = []struct {
	name  string
	share float64
}{{"page.viewed", 0.6}, {"email.opened", 0.2}, {"form.submitted", 0.1}, {"purchase.completed", 0.1}}

var cities = []string{"Campinas", "São Paulo", "Curitiba", "Recife", "Porto Alegre"}

// Profiles returns n snapshots as rolodex.profiles carries them, taken at
// now: 5 traits, 4 identifier types, channels, a default tag and for
// some a manual one, consent, 20 recent events, and a base of 20–200
// events (each type gets its share of it times 0.5–1.5; a third never
// bought, half never sent a form) over 4 types in the last 180 days (half
// of them in the last 30), whose latest 100 per type are the event times.
func Profiles(n int, seed uint64, now time.Time) []*schemas.Profile {
	r := rand.New(rand.NewPCG(seed, 0x7a95))
	out := make([]*schemas.Profile, n)
	for i := range out {
		out[i] = profile(r, i, now)
	}
	return out
}

// Key returns the profile id of the i-th generated profile: 32 hex
// digits, like the identity stage's node ids.
func Key(i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("bench-profile-%d", i)))
	return hex.EncodeToString(sum[:16])
}

func profile(r *rand.Rand, i int, now time.Time) *schemas.Profile {
	key := Key(i)
	nowMs := now.UnixMilli()
	email := fmt.Sprintf("person%d@example.com", i)
	phone := fmt.Sprintf("+55199%08d", i%100000000)
	p := &schemas.Profile{ID: key, Tenant: Tenant,
		Identifiers: map[string][]string{"email": {email}, "phone": {phone}, "user_id": {fmt.Sprintf("u%d", i)}, "cookie": {fmt.Sprintf("c%x", r.Uint64())}},
		Traits: map[string]json.RawMessage{
			"name":   json.RawMessage(fmt.Sprintf(`"Person %d"`, i)),
			"city":   json.RawMessage(`"` + cities[r.IntN(len(cities))] + `"`),
			"plan":   json.RawMessage([]string{`"free"`, `"pro"`, `"team"`}[r.IntN(3)]),
			"age":    json.RawMessage(fmt.Sprint(18 + r.IntN(60))),
			"source": json.RawMessage(`{"campaign":"spring","medium":"email"}`),
		},
		Counters: map[string]int64{}, MergedIDs: []string{}, EventTimes: map[string][]int64{},
		Consent:  map[string]schemas.ConsentState{},
		Channels: map[string][]string{},
	}
	if r.IntN(10) < 8 {
		p.Channels["email"] = []string{email}
	}
	if r.IntN(2) == 0 {
		p.Channels["sms"] = []string{phone}
	}
	// 20–200 events; each type's share, with at least one event.
	total := 20 + r.IntN(181)
	var all []int64
	var recentTypes []string
	for _, et := range eventTypes {
		k := int(float64(total) * et.share * (0.5 + r.Float64()))
		if et.name == "purchase.completed" && r.IntN(3) == 0 {
			k = 0 // a third never bought
		}
		if et.name == "form.submitted" && r.IntN(2) == 0 {
			k = 0
		}
		ts := make([]int64, k)
		for j := range ts {
			// age in days: half in the last 30 days, the rest up to 180.
			age := r.Float64() * 30
			if r.IntN(2) == 0 {
				age = r.Float64() * 180
			}
			ts[j] = nowMs - int64(age*float64(24*time.Hour/time.Millisecond))
		}
		sort.Slice(ts, func(a, b int) bool { return ts[a] > ts[b] })
		if k > 0 {
			p.Counters[et.name] = int64(k)
			p.EventCount += int64(k)
			all = append(all, ts...)
			for range min(k, schemas.RecentLimit) {
				recentTypes = append(recentTypes, et.name)
			}
		}
		if len(ts) > schemas.EventTimesLimit {
			ts = ts[:schemas.EventTimesLimit]
		}
		if len(ts) > 0 {
			p.EventTimes[et.name] = ts
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] > all[b] })
	if len(all) > 0 {
		p.FirstSeen = time.UnixMilli(all[len(all)-1]).UTC().Format(time.RFC3339Nano)
		p.LastSeen = time.UnixMilli(all[0]).UTC().Format(time.RFC3339Nano)
	}
	for j := 0; j < schemas.RecentLimit && j < len(all); j++ {
		p.Recent = append(p.Recent, schemas.RecentEvent{ID: fmt.Sprintf("e%d-%d", i, j), Type: recentTypes[j%len(recentTypes)], Source: "web",
			Time: time.UnixMilli(all[j]).UTC().Format(time.RFC3339Nano)})
	}
	since := now.Add(-90 * 24 * time.Hour)
	tag := func(name, source string) schemas.ProfileTag {
		return schemas.ProfileTag{Tag: name, Source: source, Since: since.UTC().Format(time.RFC3339Nano), SinceMs: since.UnixMilli()}
	}
	p.Tags = append(p.Tags, tag("new", schemas.TagSourceDefault))
	if r.IntN(5) == 0 {
		p.Tags = append(p.Tags, tag("vip", schemas.TagSourceManual))
	}
	if r.IntN(2) == 0 {
		p.Consent["marketing"] = schemas.ConsentState{Status: schemas.ConsentGranted, Since: since.UTC().Format(time.RFC3339Nano)}
	}
	if r.IntN(50) == 0 {
		p.Blacklisted = true
	}
	return p
}
