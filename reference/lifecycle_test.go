package reference

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// TestMessageTableIsTheDocs: the model's table is docs/lifecycle.md's,
// cell for cell, so that the page and the model cannot drift apart.
func TestMessageTableIsTheDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/lifecycle.md")
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "|") {
			if header != nil && len(rows) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cells[0] == `from \ asked`:
			header = cells[1:]
		case header != nil && !strings.HasPrefix(cells[0], "---"):
			rows[cells[0]] = cells[1:]
		}
	}
	if strings.Join(header, ",") != strings.Join(MessageColumns, ",") {
		t.Fatalf("docs columns %v, model %v", header, MessageColumns)
	}
	if len(rows) != len(MessageTable) {
		t.Errorf("docs have %d rows, the model %d", len(rows), len(MessageTable))
	}
	for from, want := range MessageTable {
		got, ok := rows[from]
		if !ok {
			t.Errorf("docs lack the row %q", from)
			continue
		}
		if len(got) != len(want) {
			t.Errorf("row %q: docs have %d cells, the model %d", from, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s → %s: docs say %q, the model %q", from, MessageColumns[i], got[i], want[i])
			}
		}
	}
}

func TestMessageCell(t *testing.T) {
	for _, tc := range []struct {
		from, asked       schemas.MessageState
		absorbed, refused bool
		path              string
	}{
		{"", "opened", false, false, "draft,sent,delivered,opened"},
		{"sent", "cancelled", false, false, "cancelled,saved"},
		{"draft", "cancelled", false, false, "sent,cancelled,saved"},
		{"opened", "delivered", true, false, ""},
		{"saved", "sent", false, true, ""},
		{"edited", "deleted", false, false, "saved,deleted"},
	} {
		a, r, p, ok := MessageCell(tc.from, tc.asked)
		var ps []string
		for _, s := range p {
			ps = append(ps, string(s))
		}
		if !ok || a != tc.absorbed || r != tc.refused || strings.Join(ps, ",") != tc.path {
			t.Errorf("%q → %q: absorbed %v refused %v path %v ok %v", tc.from, tc.asked, a, r, ps, ok)
		}
	}
}

// TestMessagesFold: a message out of order, with a provider retry and a
// refusal, folds by event time.
func TestMessagesFold(t *testing.T) {
	ev := func(id, typ string, ms int64, props map[string]string) *schemas.Event {
		p := map[string]string{"message_id": `"m1"`}
		for k, v := range props {
			p[k] = v
		}
		return &schemas.Event{Tenant: "t", ID: id, Type: typ, Time: time.UnixMilli(ms), Properties: p}
	}
	evs := []*schemas.Event{
		ev("e4", "message.opened", 40, map[string]string{"provider_event_id": `"p1"`}),
		ev("e1", "message.sent", 10, nil),
		ev("e5", "message.opened", 41, map[string]string{"provider_event_id": `"p1"`}),
		ev("e6", "message.deleted", 50, nil),
		ev("e1", "message.sent", 10, nil),
	}
	o := Messages(evs, nil)["t/m1"]
	if o.State != "opened" || o.Channel != "email" {
		t.Fatalf("state %q channel %q", o.State, o.Channel)
	}
	var hows []string
	for _, h := range o.History {
		hows = append(hows, string(h.State)+":"+h.How)
	}
	want := "draft:implied sent:event delivered:implied opened:event opened:duplicate deleted:refused"
	if strings.Join(hows, " ") != want {
		t.Errorf("history %v, want %s", hows, want)
	}
	if r := o.Refused["e6"]; r.From != "opened" || r.Asked != "deleted" || r.Reason != "invalid_transition" || len(o.Refused) != 1 {
		t.Errorf("refused %+v", o.Refused)
	}
}
