package schemas

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/internal/jsonscan"
)

// checkDecodeArray fails t unless DecodeRawEventArray(b) either declines
// or gives exactly what the element-by-element way gives:
// jsonscan.SplitArray, then DecodeRawEventJSON of every element, none
// failing. It reports whether the one-pass way took b.
func checkDecodeArray(t *testing.T, b []byte, maxEvents int) bool {
	t.Helper()
	events, elems, ok := DecodeRawEventArray(b, maxEvents)
	if !ok {
		if events != nil || elems != nil {
			t.Fatalf("DecodeRawEventArray(%q) declined but returned %d events, %d elements", b, len(events), len(elems))
		}
		return false
	}
	want, err := jsonscan.SplitArray(b)
	if err != nil {
		t.Fatalf("DecodeRawEventArray(%q) took an array SplitArray refuses: %v", b, err)
	}
	if len(want) == 0 || len(want) > maxEvents {
		t.Fatalf("DecodeRawEventArray(%q) took an array of %d elements (max %d)", b, len(want), maxEvents)
	}
	if len(elems) != len(want) || len(events) != len(want) {
		t.Fatalf("DecodeRawEventArray(%q): %d events, %d elements, SplitArray %d", b, len(events), len(elems), len(want))
	}
	decoded := make([]RawEvent, len(want))
	for i := range want {
		if !bytes.Equal(elems[i], want[i]) {
			t.Fatalf("element %d = %q, SplitArray %q", i, elems[i], want[i])
		}
		ev, err := DecodeRawEventJSON(want[i])
		if err != nil {
			t.Fatalf("DecodeRawEventArray took element %d (%q), which DecodeRawEventJSON refuses: %v", i, want[i], err)
		}
		if !reflect.DeepEqual(events[i], *ev) {
			t.Fatalf("event %d = %#v, DecodeRawEventJSON %#v", i, events[i], *ev)
		}
		decoded[i] = *ev
	}
	// The events share no memory with b: overwriting b changes none.
	for i := range b {
		b[i] = 'X'
	}
	if !reflect.DeepEqual(events, decoded) {
		t.Fatalf("DecodeRawEventArray's events changed with the body: they share memory with it")
	}
	return true
}

// randomArray writes an array of random events, with random white space,
// sometimes odd events and sometimes broken syntax between them.
func randomArray(rng *rand.Rand) []byte {
	ws := func() string {
		if rng.IntN(3) == 0 {
			return []string{" ", "\n", "\t", "\r\n  "}[rng.IntN(4)]
		}
		return ""
	}
	var sb strings.Builder
	sb.WriteString(ws() + "[" + ws())
	n := rng.IntN(12)
	for i := range n {
		if i > 0 {
			sb.WriteString(ws() + "," + ws())
		}
		switch rng.IntN(40) {
		case 0:
			sb.WriteString(`"not an event"`)
		case 1:
			sb.WriteString(`[1,2]`)
		case 2:
			sb.WriteString(`null`)
		default:
			sb.Write(randomEventJSON(rng, rng.IntN(10) == 0))
		}
	}
	sb.WriteString(ws())
	switch rng.IntN(30) {
	case 0: // unclosed
	case 1:
		sb.WriteString("],")
	case 2:
		sb.WriteString(",]")
	default:
		sb.WriteString("]")
	}
	sb.WriteString(ws())
	return []byte(sb.String())
}

// TestDecodeRawEventArray holds the one-pass array decoding to the
// element-by-element way on generated arrays.
func TestDecodeRawEventArray(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	n := 5000
	if testing.Short() || raceEnabled {
		n = 500
	}
	took := 0
	for range n {
		if checkDecodeArray(t, randomArray(rng), 1+rng.IntN(12)) {
			took++
		}
	}
	t.Logf("one pass took %d of %d arrays", took, n)
	if took < n/10 {
		t.Errorf("one pass took only %d of %d arrays", took, n)
	}
}

// TestDecodeRawEventArrayEdges: what the one-pass way must decline.
func TestDecodeRawEventArrayEdges(t *testing.T) {
	plain := `{"id":"e1","type":"t","identifiers":{"email":"a@b.co"}}`
	for _, tc := range []struct {
		body string
		max  int
		take bool
	}{
		{"[" + plain + "]", 10, true},
		{" [ " + plain + " , " + plain + " ] ", 10, true},
		{"[" + plain + "," + plain + "]", 1, false}, // too many: the caller says so
		{"[]", 10, false},                           // empty: the caller decides
		{"[" + plain, 10, false},
		{"[" + plain + ",]", 10, false},
		{"[" + plain + "] x", 10, false},
		{plain, 10, false},
		{`[{"ID":"e1"}]`, 10, false},           // encoding/json folds case
		{`[{"id":"e1","id":"e2"}]`, 10, false}, // repeated field
		{"[{\"id\":\"\xff\"}]", 10, false},     // not Unicode
		{`[{}]`, 10, true},
	} {
		t.Run(tc.body, func(t *testing.T) {
			if got := checkDecodeArray(t, []byte(tc.body), tc.max); got != tc.take {
				t.Fatalf("took = %v, want %v", got, tc.take)
			}
		})
	}
}

// FuzzDecodeRawEventArray holds the one-pass way to the element-by-element
// way on any input.
func FuzzDecodeRawEventArray(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte("[" + s + "]"))
	}
	f.Add([]byte(fmt.Sprintf("[%s,%s]", decodeSeeds[0], decodeSeeds[1])))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeArray(t, b, 1000)
	})
}

// TestRawEventBuffer: a buffer that reuses the maps of the arrays it
// decoded before decodes each array exactly as DecodeRawEventArray does,
// whatever came before it (declined arrays, failures half way, larger and
// smaller batches, maps of every size).
func TestRawEventBuffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	n := 5000
	if testing.Short() || raceEnabled {
		n = 500
	}
	var buf RawEventBuffer
	reused := 0
	for range n {
		b := randomArray(rng)
		maxEvents := 1 + rng.IntN(12)
		wantEvents, wantElems, wantOK := DecodeRawEventArray(b, maxEvents)
		spare := len(buf.spare.ids) + len(buf.spare.raw)
		for _, ev := range buf.events { // the maps Decode recycles first
			for _, l := range []int{len(ev.Identifiers), len(ev.Traits), len(ev.Properties)} {
				if l <= maxSpareMapLen {
					spare++
				}
			}
			spare -= boolInt(ev.Identifiers == nil) + boolInt(ev.Traits == nil) + boolInt(ev.Properties == nil)
		}
		gotEvents, gotElems, gotOK := buf.Decode(b, maxEvents)
		if gotOK != wantOK || !reflect.DeepEqual(gotEvents, wantEvents) || !reflect.DeepEqual(gotElems, wantElems) {
			t.Fatalf("RawEventBuffer.Decode(%q) = %#v, %q, %v; DecodeRawEventArray %#v, %q, %v",
				b, gotEvents, gotElems, gotOK, wantEvents, wantElems, wantOK)
		}
		if gotOK && spare > len(buf.spare.ids)+len(buf.spare.raw) { // some were taken
			reused++
		}
	}
	if reused < n/20 {
		t.Fatalf("only %d of %d decodings reused a map; the test no longer covers reuse", reused, n)
	}
	for _, m := range buf.spare.raw {
		if len(m) != 0 {
			t.Fatalf("a spare map holds %d entries", len(m))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
