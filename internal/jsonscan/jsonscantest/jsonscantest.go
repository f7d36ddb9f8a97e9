// Package jsonscantest generates JSON text for the tests of jsonscan and
// of the decoders built on it.
package jsonscantest

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
)

// String returns a JSON string token of up to 11 pieces of text. An odd
// one also has escapes, surrogate pairs, lone surrogates and invalid
// UTF-8.
func String(rng *rand.Rand, odd bool) string {
	parts := []string{"a", "b", "Z", "0", "9", "-", "_", ".", "@", "ã", "é", "中", "😀", " "}
	if odd {
		parts = append(parts, `\"`, `\\`, `\/`, `\n`, `\u00e9`, `\ud83d\ude00`, `\ud800`, "\xff", "\xc3")
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for n := rng.IntN(12); n > 0; n-- {
		sb.WriteString(parts[rng.IntN(len(parts))])
	}
	sb.WriteByte('"')
	return sb.String()
}

// Value returns a JSON value nested at most depth levels deep, with white
// space here and there; odd says its strings are odd (see String).
func Value(rng *rand.Rand, depth int, odd bool) string {
	k := rng.IntN(8)
	if depth == 0 {
		k = rng.IntN(5)
	}
	switch k {
	case 0:
		return String(rng, odd)
	case 1:
		return []string{"0", "-1", "3.25", "1e9", "-0.5E-3", "12345678901234567890"}[rng.IntN(6)]
	case 2:
		return []string{"true", "false"}[rng.IntN(2)]
	case 3:
		return "null"
	case 4:
		return String(rng, odd)
	case 5:
		var l []string
		for n := rng.IntN(4); n > 0; n-- {
			l = append(l, Value(rng, depth-1, odd))
		}
		return "[" + strings.Join(l, ", ") + "]"
	default:
		var l []string
		for n := rng.IntN(4); n > 0; n-- {
			l = append(l, String(rng, odd)+": "+Value(rng, depth-1, odd))
		}
		return "{" + strings.Join(l, ",") + "}"
	}
}

var hexByte = regexp.MustCompile(`\\x[0-9a-f]{2}`)

// Bin turns each \xHH of s into that byte: tests write JSON in raw
// strings, and JSON has no \x escape.
func Bin(s string) string {
	return hexByte.ReplaceAllStringFunc(s, func(h string) string {
		v, _ := strconv.ParseUint(h[2:], 16, 8)
		return string([]byte{byte(v)})
	})
}
