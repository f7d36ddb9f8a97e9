package schemas

import (
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// hambaEvent is the Event as github.com/hamba/avro/v2 decodes it: the
// library the hand-written decoder (avro_event_decode.go) is measured
// against (docs/benchmarks.md, issue 17). Times stay longs so that 0 reads
// as the zero time.Time, as DecodeEvent has it.
type hambaEvent struct {
	Tenant      string            `avro:"tenant"`
	ID          string            `avro:"id"`
	Type        string            `avro:"type"`
	Time        int64             `avro:"time"`
	Source      string            `avro:"source"`
	Identifiers []hambaIdentifier `avro:"identifiers"`
	Traits      map[string]string `avro:"traits"`
	Properties  map[string]string `avro:"properties"`
	Partner     string            `avro:"partner"`
	ReceivedAt  int64             `avro:"received_at"`
	Topic       *string           `avro:"topic"`
}

type hambaIdentifier struct {
	Type  string `avro:"type"`
	Value string `avro:"value"`
}

// decodeEventHamba decodes a framed Event v3 with hamba/avro and converts
// it to an *Event as DecodeEvent returns it.
func decodeEventHamba(schema avro.Schema, data []byte) (*Event, error) {
	var h hambaEvent
	if err := avro.Unmarshal(schema, data[FrameHeaderSize:], &h); err != nil {
		return nil, err
	}
	e := &Event{Tenant: h.Tenant, ID: h.ID, Type: h.Type, Source: h.Source, Partner: h.Partner,
		Traits: h.Traits, Properties: h.Properties}
	if len(h.Identifiers) > 0 {
		e.Identifiers = make([]Identifier, len(h.Identifiers))
		for i, id := range h.Identifiers {
			e.Identifiers[i] = Identifier(id)
		}
	}
	if len(e.Traits) == 0 {
		e.Traits = nil
	}
	if len(e.Properties) == 0 {
		e.Properties = nil
	}
	if h.Time != 0 {
		e.Time = time.UnixMilli(h.Time).UTC()
	}
	if h.ReceivedAt != 0 {
		e.ReceivedAt = time.UnixMilli(h.ReceivedAt).UTC()
	}
	if h.Topic != nil {
		e.Topic = *h.Topic
	}
	return e, nil
}

func BenchmarkDecodeEventHamba(b *testing.B) {
	data, err := EncodeEvent(fullEvent())
	if err != nil {
		b.Fatal(err)
	}
	avsc, _ := AvroSchema(SchemaIDEventV3)
	schema, err := avro.Parse(avsc)
	if err != nil {
		b.Fatal(err)
	}
	want, err := DecodeEvent(data)
	if err != nil {
		b.Fatal(err)
	}
	got, err := decodeEventHamba(schema, data)
	if err != nil {
		b.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		b.Fatalf("hamba: %+v, want %+v", got, want)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := decodeEventHamba(schema, data); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu0)
}
