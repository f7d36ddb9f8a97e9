package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"
)

// randomNode is a node like the identity stage keeps: a root with members,
// dedupe entries, links, traits with characters JSON must escape.
func randomNode(rng *rand.Rand) *Node {
	contrib := func(i int) Contribution {
		c := Contribution{Node: fmt.Sprintf("p_%020d", rng.Int63()), Identifier: Identifier{Type: IDEmail, Value: fmt.Sprintf("user%d@example.com", i)}}
		for j := 0; j < 1+rng.Intn(20); j++ {
			ev := &Event{ID: fmt.Sprintf("ev-%d-%d", i, j), Type: []string{"page_view", "signup", "<purchase>"}[rng.Intn(3)], Source: "web",
				Time: time.UnixMilli(1_790_000_000_000 + rng.Int63n(1e9)), Traits: map[string]string{"name": "Ana \"Ñ\" & <Bo>", "city": fmt.Sprint(rng.Intn(100))}}
			c.Add(ev)
		}
		return c
	}
	n := &Node{Tenant: "demo", Identifier: Identifier{Type: IDEmail, Value: "ana@example.com"}, Own: contrib(0),
		Seen: map[uint64]int64{}, Linked: map[string]int64{}, PendingBy: rng.Int63(), AppliedBy: rng.Int63()}
	for i := 0; i < rng.Intn(60); i++ {
		n.Seen[rng.Uint64()] = rng.Int63()
	}
	for i := 1; i < rng.Intn(8); i++ {
		c := contrib(i)
		if n.Members == nil {
			n.Members = map[string]Contribution{}
		}
		n.Members[c.Node] = c
		n.Linked[c.Node] = rng.Int63()
	}
	if rng.Intn(2) == 0 {
		n.Pending = "p_0"
		n.Deferred = []Message{{Kind: KindUnion, Tenant: "demo", Other: "p_1"}}
		n.MergedBy = 5
		n.Redeliveries = []Settlement{{By: 7, Messages: []Message{{Kind: KindPropose, Tenant: "demo", Other: "p_3", Ref: 3, Of: 7, Seq: 1, Contribs: []Contribution{contrib(9)}}}}}
	}
	return n
}

// The codec writes exactly what encoding/json writes (the table and the
// outputs are read by other programs), and reads it back.
func TestJSONCodecMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	c := JSONCodec[Node]{}
	for i := 0; i < 200; i++ {
		n := randomNode(rng)
		got, err := c.Encode(n)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding differs from encoding/json:\n got %s\nwant %s", got, want)
		}
		back, err := c.Decode(want)
		if err != nil {
			t.Fatal(err)
		}
		// Empty maps read back as nil (omitempty), so compare encodings.
		again, _ := json.Marshal(back)
		if !bytes.Equal(again, want) || (len(n.Seen) > 0 && !reflect.DeepEqual(back.(*Node).Seen, n.Seen)) {
			t.Fatalf("decoded %s, want %s", again, want)
		}
	}
	if _, err := c.Decode([]byte(`{"tn": 5}`)); err == nil {
		t.Error("decoding a number into a string field succeeded")
	}
	if _, err := c.Encode("not a node"); err == nil {
		t.Error("encoding a string as a node succeeded")
	}
}

func BenchmarkNodeCodec(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	nodes := make([]*Node, 64)
	var size int
	for i := range nodes {
		nodes[i] = randomNode(rng)
		data, _ := json.Marshal(nodes[i])
		size += len(data)
	}
	b.Logf("mean node %d bytes of JSON", size/len(nodes))
	c := JSONCodec[Node]{}
	b.Run("encode/codec", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := c.Encode(nodes[i%len(nodes)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/encoding-json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := json.Marshal(nodes[i%len(nodes)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	data := make([][]byte, len(nodes))
	for i, n := range nodes {
		data[i], _ = json.Marshal(n)
	}
	b.Run("decode/codec", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := c.Decode(data[i%len(data)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var n Node
			if err := json.Unmarshal(data[i%len(data)], &n); err != nil {
				b.Fatal(err)
			}
		}
	})
}
