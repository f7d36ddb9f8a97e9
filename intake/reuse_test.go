package intake

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/schemas"
)

// randomRawEvent is an event as a partner may send it: mostly valid, with
// invalid and blocked identifiers, odd JSON values, status and message
// events, missing fields and invalid text now and then.
func randomRawEvent(rng *rand.Rand, i int) *schemas.RawEvent {
	pick := func(l ...string) string { return l[rng.IntN(len(l))] }
	raw := &schemas.RawEvent{
		ID:     fmtID(i),
		Type:   "page.viewed",
		Time:   pick("", "2026-11-23T10:42:00Z", "2026-11-23T10:42:00.123456Z"),
		Source: pick("", "web", "app"),
	}
	if rng.IntN(5) == 0 { // odd ones
		raw.ID = pick(raw.ID, "", " "+raw.ID+" ", "\xff")
		raw.Type = pick("lead.created", "bad type!", "", schemas.EventTagAdded, schemas.EventIdentifierInvalidated, schemas.EventConsentGranted, "message.sent", "message.bounced")
		raw.Time = pick(raw.Time, "yesterday", "2099-01-01T00:00:00Z")
	}
	if rng.IntN(12) > 0 {
		raw.Identifiers = map[string][]string{}
		for range rng.IntN(4) + 1 {
			typ := pick("email", "phone", "user_id", "whatsapp", "EMAIL", "external:crm", "nope")
			vals := []string{}
			for range rng.IntN(3) + 1 {
				vals = append(vals, pick("ana@example.com", "Ana.Silva@Example.COM", "not-an-email", "null", "(41) 97798-6490", "+55 41 97798-6490",
					"123", "u-1", "u-2", "", "  ", "0000000000"))
			}
			raw.Identifiers[typ] = append(raw.Identifiers[typ], vals...)
		}
	}
	values := func() map[string]json.RawMessage {
		if rng.IntN(4) == 0 {
			return nil
		}
		m := map[string]json.RawMessage{}
		for range rng.IntN(12) {
			m[pick("name", "city", "tag", "value", "message_id", "channel", "bounce", "url", "n", "kk")] =
				json.RawMessage(pick(`"Ana"`, `"São Paulo"`, `42`, `{"a": [1, 2]}`, `[1,2]`, `null`, ``, `"vip"`, `"m-1"`, `"email"`, `"hard"`))
		}
		return m
	}
	raw.Traits, raw.Properties = values(), values()
	// At most one bad value: with two, which one the rejection names
	// depends on the map's order.
	if m := raw.Traits; m != nil && rng.IntN(10) == 0 {
		if rng.IntN(2) == 0 {
			m[""] = json.RawMessage(`1`)
		} else {
			m["bad"] = json.RawMessage(`{bad`)
		}
	}
	return raw
}

func fmtID(i int) string { return "ev-" + strings.Repeat("0", 3) + string(rune('a'+i%26)) }

// TestValidateReusing: validating with the memory of released events gives
// exactly what Validate gives, event after event, whatever the events
// released before held (larger maps, more identifiers, rejections).
func TestValidateReusing(t *testing.T) {
	v, p := testValidator(t)
	rng := rand.New(rand.NewPCG(21, 22))
	received := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	n := 20000
	if testing.Short() {
		n = 3000
	}
	var buf EventBuffer
	var batch []*schemas.Event
	accepted, reused := 0, 0
	for i := range n {
		raw := randomRawEvent(rng, i)
		want, wantDropped, wantRej := v.Validate(p, raw, received)
		spare := len(buf.events)
		got, gotDropped, gotRej := v.ValidateReusing(&buf, p, raw, received)
		// The dropped identifiers come in the identifiers map's order.
		sortDropped(gotDropped)
		sortDropped(wantDropped)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotDropped, wantDropped) || !reflect.DeepEqual(gotRej, wantRej) {
			t.Fatalf("event %d %+v:\nValidateReusing = %+v, %v, %v\nValidate        = %+v, %v, %v", i, raw, got, gotDropped, gotRej, want, wantDropped, wantRej)
		}
		if got != nil {
			accepted++
			if len(buf.events) < spare {
				reused++
			}
			batch = append(batch, got)
		}
		if rng.IntN(5) == 0 { // a request ends
			buf.Release(batch)
			batch = batch[:0]
		}
	}
	t.Logf("%d of %d events accepted, %d in reused memory", accepted, n, reused)
	if accepted < n/10 || reused < accepted/2 {
		t.Fatalf("%d of %d events accepted, %d of them in reused memory: the test no longer covers reuse", accepted, n, reused)
	}
}

func sortDropped(l []*normalize.Error) {
	slices.SortFunc(l, func(a, b *normalize.Error) int {
		return strings.Compare(fmt.Sprintf("%#v", *a), fmt.Sprintf("%#v", *b))
	})
}
