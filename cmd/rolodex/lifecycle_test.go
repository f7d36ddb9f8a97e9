package main

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
)

// The lifecycle's chain end to end over HTTP, in dev mode (ingest, the
// identity stage, the lifecycle's three groups, the API, on the embedded
// broker): a hard bounce of Ana's email reaches her profile (invalid,
// reason hard_bounce, no longer a channel); a later send to that address is
// refused: a dead letter invalid_recipient in rolodex.deadletter (read
// with "rolodex deadletters tail") and the refusal in GET /v1/messages/{id}
// (and "rolodex message get"). A spam complaint revokes Bia's
// email_marketing consent, with the message as the cause.
func TestLifecycleChain(t *testing.T) {
	api, kafka := startDevKafka(t)
	post := func(body string) {
		t.Helper()
		if code, ans := httpJSON(t, "POST", api+"/v1/events", body); code != 202 {
			t.Fatalf("POST /v1/events %s: %d %v", body, code, ans)
		}
	}
	profileOf := func(email string) map[string]any {
		code, p := httpJSON(t, "GET", api+"/v1/lookup?type=email&value="+url.QueryEscape(email), "")
		if code != 200 {
			return nil
		}
		return p
	}
	channel := func(p map[string]any, ch, value string) bool {
		cs, _ := p["channels"].(map[string]any)
		vs, _ := cs[ch].([]any)
		for _, v := range vs {
			if v == value {
				return true
			}
		}
		return false
	}

	// Ana, reachable by email and sms; Bia, who granted email marketing.
	post(`[{"id":"sig-ana","type":"signup","time":"2026-11-22T09:00:00Z","identifiers":{"email":"ana@example.com","phone":"+55 11 91234-5678"}},
		{"id":"sig-bia","type":"consent.granted","time":"2026-11-22T09:00:00Z","identifiers":{"email":"bia@example.com"},"properties":{"purpose":"email_marketing"}}]`)
	eventually(t, "Ana reachable by email", func() bool { return channel(profileOf("ana@example.com"), "email", "ana@example.com") })

	// The campaign goes out; Ana's address bounces hard.
	post(`[{"id":"m1-sent","type":"message.sent","time":"2026-11-22T10:00:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp-1/ana","channel":"email"}},
		{"id":"m1-bounce","type":"message.bounced","time":"2026-11-22T10:01:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp-1/ana","bounce":"hard","provider_event_id":"sg-77"}}]`)
	var ana map[string]any
	eventually(t, "Ana's email invalid (hard_bounce) and not a channel", func() bool {
		ana = profileOf("ana@example.com")
		inv, _ := ana["invalid_identifiers"].([]any)
		for _, x := range inv {
			i := x.(map[string]any)
			if i["type"] == "email" && i["value"] == "ana@example.com" && i["reason"] == "hard_bounce" {
				return !channel(ana, "email", "ana@example.com")
			}
		}
		return false
	})
	if !channel(ana, "sms", "+5511912345678") {
		t.Fatalf("Ana's phone should still be a channel: %v", ana["channels"])
	}
	message := func(id string) map[string]any {
		code, m := httpJSON(t, "GET", api+"/v1/messages/"+url.PathEscape(id), "")
		if code != 200 {
			return nil
		}
		return m
	}
	eventually(t, "camp-1/ana bounced hard", func() bool {
		m := message("camp-1/ana")
		return m != nil && m["state"] == "bounced" && m["bounce"] == "hard"
	})
	m1 := message("camp-1/ana")
	rc := m1["recipient"].(map[string]any)
	if rc["profile_id"] != ana["id"] || rc["address"].(map[string]any)["value"] != "ana@example.com" || len(m1["history"].([]any)) != 3 {
		t.Fatalf("camp-1/ana = %v; want Ana's address and profile %v, history draft (implied), sent, bounced", m1, ana["id"])
	}

	// The next campaign's send to her is refused.
	post(`{"id":"m2-sent","type":"message.sent","time":"2026-11-22T11:00:00Z","identifiers":{"email":"ana@example.com"},"properties":{"message_id":"camp-2/ana"}}`)
	eventually(t, "camp-2/ana's send refused with invalid_recipient", func() bool {
		m := message("camp-2/ana")
		if m == nil {
			return false
		}
		rf, _ := m["refusals"].([]any)
		return m["state"] == "none" && len(rf) == 1 && rf[0].(map[string]any)["event"] == "m2-sent" && rf[0].(map[string]any)["reason"] == "invalid_recipient"
	})
	out, errOut, code := runInProcess("message", "get", "camp-2/ana", "--api", api, "--key", "demo-key")
	if code != 0 || !strings.Contains(out, `"reason": "invalid_recipient"`) || !strings.Contains(out, `"id": "camp-2/ana"`) {
		t.Fatalf("rolodex message get: exit %d %s\n%s", code, errOut, out)
	}
	if err := run(context.Background(), []string{"message", "get", "camp-9", "--api", api, "--key", "demo-key"}, io.Discard, io.Discard); err == nil ||
		err.Error() != "message: no message camp-9 in this tenant (404 not_found)" {
		t.Fatalf("rolodex message get of an unknown message: %v", err)
	}
	eventually(t, "the dead letter invalid_recipient of m2-sent", func() bool {
		out, _, code := runInProcess("deadletters", "tail", "--brokers", kafka, "--format", "json")
		if code != 0 {
			return false
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var d struct{ Reason, Message, Tenant, Partner, Topic string }
			if json.Unmarshal([]byte(line), &d) == nil && d.Reason == "invalid_recipient" {
				if d.Tenant != "demo" || d.Partner != "demo" || d.Topic != "rolodex.messages.events" ||
					!strings.Contains(d.Message, `message "camp-2/ana": event "m2-sent" asks for sent in state none: invalid_recipient`) {
					t.Fatalf("dead letter %s", line)
				}
				return true
			}
		}
		return false
	})

	// Bia reports the campaign as spam: her email marketing consent is revoked.
	post(`[{"id":"m3-sent","type":"message.sent","time":"2026-11-22T10:00:00Z","identifiers":{"email":"bia@example.com"},"properties":{"message_id":"camp-1/bia"}},
		{"id":"m3-spam","type":"message.spam","time":"2026-11-22T10:30:00Z","identifiers":{"email":"bia@example.com"},"properties":{"message_id":"camp-1/bia"}}]`)
	eventually(t, "Bia's email_marketing consent revoked", func() bool {
		c, _ := profileOf("bia@example.com")["consent"].(map[string]any)
		em, _ := c["email_marketing"].(map[string]any)
		return em["status"] == "revoked" && em["since"] == "2026-11-22T10:30:00Z"
	})
	eventually(t, "camp-1/bia in spam (delivered implied)", func() bool {
		m := message("camp-1/bia")
		return m != nil && m["state"] == "spam"
	})
}
