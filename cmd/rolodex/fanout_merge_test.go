package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Partner fan-out after a merge, end to end in dev mode (docs/fanout.md,
// "Merges"): a subscriber received one person's data under two profile
// ids (an email profile and a phone profile, each with consent); an event
// with both identifiers merges them; a revocation on the merged profile
// then reaches the subscriber under both ids, and a blacklisting cancels
// under both. Before merges moved what a subscription received to the
// survivor, the merged-away id was never told.
func TestFanoutMergeEndToEnd(t *testing.T) {
	offers := newSubscriber(t)
	cfg := `partners:
  - name: demo
    tenant: demo
    keys: [{key: demo-key, scopes: [events:write, profiles:read, profiles:write, admin, topics:write]}]
  - name: bank
    tenant: demo
    keys: [{key: bank-key, scopes: [events:write]}]
`
	path := filepath.Join(t.TempDir(), "rolodex.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api, _ := startDevArgs(t, "--config", path)
	must := func(want int, key, method, path, body string) map[string]any {
		t.Helper()
		code, ans, _ := callAPI(t, key, method, api+path, body)
		if code != want {
			t.Fatalf("%s %s %s: %d %v, want %d", method, path, body, code, ans, want)
		}
		return ans
	}
	eventually(t, "the topic store answers", func() bool {
		code, _ := httpAs(t, "demo-key", "GET", api+"/v1/topics", "")
		return code == 200
	})
	must(201, "demo-key", "POST", "/v1/topics", `{"name":"offers","allowed":["bank"],"requires_consent":"partner_offers"}`)
	sub := must(201, "bank-key", "POST", "/v1/subscriptions", fmt.Sprintf(`{"topic":"offers","webhook":{"url":%q}}`, offers.srv.URL))
	offers.setSecret(fmt.Sprint(sub["secret"]))
	subID := fmt.Sprint(sub["id"])

	lookup := func(typ, value string) map[string]any {
		t.Helper()
		var p map[string]any
		eventually(t, "the profile of "+value, func() bool {
			var code int
			code, p = httpAs(t, "demo-key", "GET", api+"/v1/lookup?type="+typ+"&value="+url.QueryEscape(value), "")
			return code == 200
		})
		return p
	}
	consent := func(id, status string) {
		t.Helper()
		must(202, "demo-key", "PUT", fmt.Sprintf("/v1/profiles/%s/consent/partner_offers", id), fmt.Sprintf(`{"status":%q}`, status))
	}
	consentIs := func(typ, value, status string) {
		t.Helper()
		eventually(t, value+"'s consent "+status, func() bool {
			c, _ := lookup(typ, value)["consent"].(map[string]any)
			po, _ := c["partner_offers"].(map[string]any)
			return po != nil && po["status"] == status
		})
	}
	publish := func(id, identifiers string) {
		t.Helper()
		must(202, "demo-key", "POST", "/v1/topics/offers/events",
			fmt.Sprintf(`{"id":%q,"type":"offer.viewed","identifiers":%s}`, id, identifiers))
	}
	wantIDs := func(what string, want ...string) {
		t.Helper()
		sort.Strings(want)
		eventually(t, what, func() bool { return strings.Join(offers.ids(), " ") == strings.Join(want, " ") })
	}

	// Two profiles of one person, each with consent, each delivered.
	must(202, "demo-key", "POST", "/v1/events", `{"id":"m1","type":"profile.updated","identifiers":{"email":"eva@example.com"}}`)
	must(202, "demo-key", "POST", "/v1/events", `{"id":"m2","type":"profile.updated","identifiers":{"phone":"+5511987650001"}}`)
	byEmail, byPhone := lookup("email", "eva@example.com"), lookup("phone", "+5511987650001")
	idEmail, idPhone := fmt.Sprint(byEmail["id"]), fmt.Sprint(byPhone["id"])
	if idEmail == idPhone {
		t.Fatalf("one profile before the merge: %s", idEmail)
	}
	consent(idEmail, "granted")
	consent(idPhone, "granted")
	consentIs("email", "eva@example.com", "granted")
	consentIs("phone", "+5511987650001", "granted")
	publish("o1", `{"email":"eva@example.com"}`)
	publish("o2", `{"phone":"+5511987650001"}`)
	wantIDs("o1 and o2 delivered", subID+".o1", subID+".o2")
	got := offers.received()
	if got[subID+".o1"]["profile_id"] != idEmail || got[subID+".o2"]["profile_id"] != idPhone {
		t.Fatalf("profile ids of o1 and o2: %v, %v (want %s, %s)", got[subID+".o1"]["profile_id"], got[subID+".o2"]["profile_id"], idEmail, idPhone)
	}

	// The merge: one event with both identifiers.
	must(202, "demo-key", "POST", "/v1/events", `{"id":"m3","type":"profile.updated","identifiers":{"email":"eva@example.com","phone":"+5511987650001"}}`)
	var merged string
	eventually(t, "the two profiles merged", func() bool {
		a, b := lookup("email", "eva@example.com"), lookup("phone", "+5511987650001")
		merged = fmt.Sprint(a["id"])
		return a["id"] == b["id"]
	})
	gone := idEmail
	if merged == idEmail {
		gone = idPhone
	}
	handovers := metricValue(t, api, `rolodex_fanout_merge_records_total{kind="handover"}`)
	eventually(t, "the merged-away profile's holdings moved", func() bool {
		return metricValue(t, api, `rolodex_fanout_merge_records_total{kind="moved"}`) >= 1
	})
	if handovers < 1 {
		t.Fatalf("no handover counted (%v)", handovers)
	}

	// A revocation on the merged profile reaches the subscriber under both
	// ids it knows.
	consent(merged, "revoked")
	consentIs("email", "eva@example.com", "revoked")
	revokedFor := map[string]bool{}
	eventually(t, "revocations under both profile ids", func() bool {
		for id, b := range offers.received() {
			if b["kind"] == "consent_revoked" {
				if !strings.HasPrefix(id, subID+".revoked."+fmt.Sprint(b["profile_id"])+".partner_offers.") || b["purpose"] != "partner_offers" {
					t.Fatalf("revocation %s: %v", id, b)
				}
				revokedFor[fmt.Sprint(b["profile_id"])] = true
			}
		}
		return revokedFor[merged] && revokedFor[gone]
	})

	// Granted again, an offer under the merged id; then a blacklisting
	// cancels under both ids (nothing waits: the senders read the cancels
	// and send nothing).
	consent(merged, "granted")
	consentIs("email", "eva@example.com", "granted")
	publish("o3", `{"phone":"+5511987650001"}`)
	eventually(t, "o3 delivered under the merged id", func() bool { return offers.received()[subID+".o3"]["profile_id"] == merged })
	cancels := metricValue(t, api, `rolodex_fanout_deliveries_total{kind="blacklisted"}`)
	must(202, "demo-key", "POST", "/v1/blacklist", fmt.Sprintf(`{"profiles":[%q],"reason":"asked to be left alone"}`, merged))
	eventually(t, "cancels under both ids", func() bool {
		return metricValue(t, api, `rolodex_fanout_deliveries_total{kind="blacklisted"}`) >= cancels+2
	})
	for id, b := range offers.received() {
		if b["kind"] == "blacklisted" {
			t.Fatalf("a blacklisting's cancel reached the subscriber: %s %v", id, b)
		}
	}
}
