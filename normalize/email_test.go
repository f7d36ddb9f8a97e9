package normalize

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// slowCheckEmail is checkEmail as it was before the fast path: every
// address that passes the structural checks goes through net/mail.
func slowCheckEmail(v string) string {
	if p := checkEmail(v); p != "" || !fastEmail(v) {
		return p
	}
	return parseEmail(v)
}

// fastEmail reports whether checkEmail answered v without net/mail.
func fastEmail(v string) bool {
	at := strings.IndexByte(v, '@')
	return at >= 0 && plainLocalPart(v[:at])
}

// TestCheckEmailFastPath: every address the fast path accepts, net/mail
// accepts as a bare address too. The addresses are built from the pieces
// that make net/mail decide otherwise (dots, quotes, brackets, comments,
// white space, '@', non-ASCII, every atext symbol).
func TestCheckEmailFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 2))
	pieces := []string{"a", "z", "Q", "0", "9", ".", "..", "_", "+", "-", "!", "#", "$", "%", "&", "'", "*", "/", "=", "?", "^", "`", "{", "|", "}", "~",
		"\"", "(", ")", "<", ">", "[", "]", ":", ";", "@", "\\", ",", " ", "\t", "é", "ß", "\u00a0", "x.y", "ana.silva42"}
	domains := []string{"example.com", "a.b", "exämple.com.br", "-a.com", "a..b", "1.2", "[1.2.3.4]", "a.com.", ".a.com", "a_b.com", "xn--d1acufc.xn--p1ai"}
	n := 200000
	if testing.Short() || raceEnabled {
		n = 20000
	}
	fast := 0
	for range n {
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		v := b.String() + "@" + domains[rng.IntN(len(domains))]
		got, want := checkEmail(v), slowCheckEmail(v)
		if got != want {
			t.Fatalf("checkEmail(%q) = %q, net/mail says %q", v, got, want)
		}
		if got == "" && fastEmail(v) {
			fast++
		}
	}
	if fast < n/20 {
		t.Fatalf("only %d of %d addresses took the fast path; the test no longer covers it", fast, n)
	}
}

// FuzzCheckEmail holds the fast path to net/mail on any input.
func FuzzCheckEmail(f *testing.F) {
	for _, s := range []string{"ana@example.com", "a.b+c@x.com.br", ".a@x.com", "a.@x.com", "a..b@x.com", `"a"@x.com`, "a(b)@x.com", "a@b@c.com", "ana@exämple.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8.ValidString(v) {
			return // checkEmail's callers check UTF-8 first
		}
		if got, want := checkEmail(v), slowCheckEmail(v); got != want {
			t.Fatalf("checkEmail(%q) = %q, net/mail says %q", v, got, want)
		}
	})
}
