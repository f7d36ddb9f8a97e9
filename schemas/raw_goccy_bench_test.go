package schemas

import (
	"testing"

	goccy "github.com/goccy/go-json"
)

// goccyRawEvent decodes an event the way unmarshalJSONSlow does, but with
// goccy/go-json in place of encoding/json: the library the hand-written
// scanner of raw.go is measured against (docs/benchmarks.md).
type goccyRawEvent RawEvent

func (g *goccyRawEvent) decode(b []byte) error {
	var j rawEventJSON
	if err := goccy.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := idText(j.ID)
	if err != nil {
		return err
	}
	*g = goccyRawEvent{ID: id, Type: j.Type, Time: j.Time, Source: j.Source, Traits: j.Traits, Properties: j.Properties}
	if len(j.Identifiers) > 0 {
		g.Identifiers = make(map[string][]string, len(j.Identifiers))
		for k, v := range j.Identifiers {
			g.Identifiers[k] = v
		}
	}
	return nil
}

func BenchmarkDecodeRawEventJSONGoccy(b *testing.B) {
	ev := []byte(decodeSeeds[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		var g goccyRawEvent
		if err := g.decode(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBatchGoccy is BenchmarkDecodeBatch's body decoded by
// goccy/go-json: the array into []RawMessage, then each element.
func BenchmarkDecodeBatchGoccy(b *testing.B) {
	body := decodeBatchBody()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var raw []goccy.RawMessage
		if err := goccy.Unmarshal(body, &raw); err != nil {
			b.Fatal(err)
		}
		for _, e := range raw {
			var g goccyRawEvent
			if err := g.decode(e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/event")
}
