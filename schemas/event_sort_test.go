package schemas

import (
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// nodeIDBefore is NodeID as it was first written: the reference.
func nodeIDBefore(tenant string, id Identifier) string {
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(id.Type))
	h.Write([]byte{0})
	h.Write([]byte(id.Value))
	var sum [sha256.Size]byte
	return "p_" + nodeEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// sortIdentifiersBefore is SortIdentifiers as it was first written.
func sortIdentifiersBefore(ids []Identifier) {
	sort.Slice(ids, func(a, b int) bool {
		pa, pb := IdentifierPriority(ids[a].Type), IdentifierPriority(ids[b].Type)
		if pa != pb {
			return pa < pb
		}
		if ids[a].Type != ids[b].Type {
			return ids[a].Type < ids[b].Type
		}
		return ids[a].Value < ids[b].Value
	})
}

func randomIdentifier(rng *rand.Rand) Identifier {
	types := []string{IDEmail, IDPhone, IDUserID, IDAnonymousID, IDWhatsApp, IDFacebook, "external:crm", "external:a", ""}
	values := []string{"", "a", "b", "ana@example.com", "+5541977986490", "u-1", "ü", strings.Repeat("x", 300)}
	return Identifier{Type: types[rng.IntN(len(types))], Value: values[rng.IntN(len(values))] + strings.Repeat("y", rng.IntN(3))}
}

// TestNodeIDSameAsBefore: the ids the identity graph is keyed by never
// change, whatever the length of tenant, type and value.
func TestNodeIDSameAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		tenant := []string{"", "t1", "bench", strings.Repeat("t", 250)}[rng.IntN(4)]
		id := randomIdentifier(rng)
		want := nodeIDBefore(tenant, id)
		if got := NodeID(tenant, id); got != want {
			t.Fatalf("NodeID(%q, %v) = %q, want %q", tenant, id, got, want)
		}
		if len(want) != NodeIDLen {
			t.Fatalf("len(NodeID) = %d, NodeIDLen %d", len(want), NodeIDLen)
		}
		e := Event{Tenant: tenant, Identifiers: []Identifier{id}}
		if got := string(e.AppendKey([]byte("x"))); got != "x"+want || e.Key() != want {
			t.Fatalf("AppendKey = %q, Key = %q, want %q", got, e.Key(), want)
		}
	}
	if got := (&Event{}).AppendKey(nil); got != nil {
		t.Fatalf("AppendKey without identifiers = %q", got)
	}
}

// TestSortIdentifiersSameAsBefore: the order (and so the primary
// identifier and the record key) is the order sort.Slice gave.
func TestSortIdentifiersSameAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		ids := make([]Identifier, rng.IntN(12))
		for i := range ids {
			ids[i] = randomIdentifier(rng)
		}
		want := slices.Clone(ids)
		sortIdentifiersBefore(want)
		SortIdentifiers(ids)
		if !slices.Equal(ids, want) {
			t.Fatalf("SortIdentifiers = %v, want %v", ids, want)
		}
	}
}
