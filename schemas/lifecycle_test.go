package schemas

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMessageStateOf(t *testing.T) {
	for _, s := range MessageStates() {
		if got, ok := MessageStateOf(MessageEventType(s)); !ok || got != s {
			t.Errorf("%s: %q %v", s, got, ok)
		}
	}
	for _, typ := range []string{"message.received", "message.", "message.Sent", "sent", "tag.added"} {
		if IsMessageEvent(typ) {
			t.Errorf("%q is not a reserved message event", typ)
		}
	}
	if len(MessageStates()) != 14 {
		t.Fatalf("%d states", len(MessageStates()))
	}
}

func TestMessageEventOf(t *testing.T) {
	at := time.UnixMilli(1700000000123)
	ev := func(typ string, props map[string]string) *Event {
		return &Event{Tenant: "t", ID: "e1", Type: typ, Time: at, Partner: "p",
			Identifiers: []Identifier{{Type: IDEmail, Value: "ana@example.com"}}, Properties: props}
	}
	m, err := MessageEventOf(ev("message.bounced", map[string]string{"message_id": `"m1"`, "bounce": `"hard"`, "provider_event_id": `"x"`, "channel": `"sms"`}))
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageID != "m1" || m.State != MessageBounced || m.Bounce != BounceHard || m.Channel != ChannelSMS || m.ProviderEventID != "x" || m.Time != at.UnixMilli() || m.Partner != "p" {
		t.Fatalf("%+v", m)
	}
	if m, _ := MessageEventOf(ev("message.bounced", map[string]string{"message_id": `"m1"`})); m.Bounce != BounceSoft || m.Channel != ChannelEmail {
		t.Fatalf("defaults: %+v", m)
	}
	if _, err := MessageEventOf(ev("message.received", nil)); !errors.Is(err, ErrNotMessageEvent) {
		t.Fatalf("message.received: %v", err)
	}
	for _, tc := range []struct {
		typ   string
		props map[string]string
		want  string
	}{
		{"message.sent", nil, "message_id"},
		{"message.sent", map[string]string{"message_id": `3`}, "message_id"},
		{"message.sent", map[string]string{"message_id": `"` + strings.Repeat("x", 201) + `"`}, "message_id"},
		{"message.sent", map[string]string{"message_id": `"m"`, "channel": `"fax"`}, "channel"},
		{"message.sent", map[string]string{"message_id": `"m"`, "bounce": `"hard"`}, "only for message.bounced"},
		{"message.bounced", map[string]string{"message_id": `"m"`, "bounce": `"medium"`}, "hard or soft"},
	} {
		if _, err := MessageEventOf(ev(tc.typ, tc.props)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want an error about %s", tc.typ, tc.props, err, tc.want)
		}
	}
}
