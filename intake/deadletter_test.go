package intake

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/schemas"
)

func TestNewDeadLetter(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("BRT", -3*3600))
	rej := &Rejection{Reason: ReasonMissingID, Message: "the event has no id"}
	payload := []byte(`{"type":"x"}`)
	base := schemas.DeadLetter{Time: at.UTC(), Partner: "crm", Tenant: "acme", Reason: rej.Reason, Message: rej.Message, Payload: payload}
	tests := []struct {
		name   string
		origin Origin
		edit   func(d *schemas.DeadLetter)
	}{
		{"http", FromHTTP("req-1", 3), func(d *schemas.DeadLetter) { d.SourceKind, d.RequestID, d.Row = schemas.SourceHTTP, "req-1", 3 }},
		{"kafka", FromKafka(&kgo.Record{Topic: "rolodex.ingest.crm", Partition: 2, Offset: 41, Value: []byte("other")}), func(d *schemas.DeadLetter) {
			d.SourceKind, d.Topic, d.Partition, d.Offset = schemas.SourceKafka, "rolodex.ingest.crm", 2, 41
		}},
		{"csv", FromCSV("leads.csv", 7), func(d *schemas.DeadLetter) { d.SourceKind, d.File, d.Row = schemas.SourceCSV, "leads.csv", 7 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base
			tt.edit(&want)
			got := NewDeadLetter(at, "crm", "acme", tt.origin, rej, payload)
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("dead letter\n got %+v\nwant %+v", *got, want)
			}
			if got.Time.Location() != time.UTC {
				t.Fatalf("time %v is not UTC", got.Time)
			}
			rec, err := DeadLetterRecord(got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := schemas.DecodeDeadLetter(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*back, want) || rec.Topic != schemas.TopicDeadLetter || string(rec.Key) != "crm" {
				t.Fatalf("record %s key %q decodes to %+v, want %+v", rec.Topic, rec.Key, *back, want)
			}
		})
	}
}
