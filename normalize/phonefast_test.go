package normalize

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// supportedRegions is every region phonenumbers supports, sorted.
var supportedRegions = sync.OnceValue(func() []string {
	var out []string
	for r := range phonenumbers.GetSupportedRegions() {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
})

var (
	testParsersMu sync.Mutex
	testParsers   = map[string]*phoneParser{}
)

func testParser(region string) *phoneParser {
	testParsersMu.Lock()
	defer testParsersMu.Unlock()
	p, ok := testParsers[region]
	if !ok {
		p = newPhoneParser(region)
		testParsers[region] = p
	}
	return p
}

// diffPhone describes how two parsed numbers differ, or returns "".
func diffPhone(got, want *phonenumbers.PhoneNumber) string {
	var d []string
	check := func(name string, gotSet, wantSet bool, g, w any) {
		if gotSet != wantSet || fmt.Sprint(g) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s: got %v (set %v), want %v (set %v)", name, g, gotSet, w, wantSet))
		}
	}
	check("CountryCode", got.CountryCode != nil, want.CountryCode != nil, got.GetCountryCode(), want.GetCountryCode())
	check("NationalNumber", got.NationalNumber != nil, want.NationalNumber != nil, got.GetNationalNumber(), want.GetNationalNumber())
	check("Extension", got.Extension != nil, want.Extension != nil, got.GetExtension(), want.GetExtension())
	check("ItalianLeadingZero", got.ItalianLeadingZero != nil, want.ItalianLeadingZero != nil, got.GetItalianLeadingZero(), want.GetItalianLeadingZero())
	check("NumberOfLeadingZeros", got.NumberOfLeadingZeros != nil, want.NumberOfLeadingZeros != nil, got.GetNumberOfLeadingZeros(), want.GetNumberOfLeadingZeros())
	check("RawInput", got.RawInput != nil, want.RawInput != nil, got.GetRawInput(), want.GetRawInput())
	check("CountryCodeSource", got.CountryCodeSource != nil, want.CountryCodeSource != nil, got.GetCountryCodeSource(), want.GetCountryCodeSource())
	check("PreferredDomesticCarrierCode", got.PreferredDomesticCarrierCode != nil, want.PreferredDomesticCarrierCode != nil, got.GetPreferredDomesticCarrierCode(), want.GetPreferredDomesticCarrierCode())
	return strings.Join(d, "; ")
}

// checkFastPath fails t if the fast path accepts v for region but
// phonenumbers.Parse disagrees. It reports whether the fast path took v.
func checkFastPath(t *testing.T, v, region string) bool {
	t.Helper()
	want, err := parsePhone(v, region)
	if err == nil {
		checkValid(t, want)
	}
	got, ok := testParser(region).parse(v)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("fast path parsed %q (region %s) as %v, Parse fails: %v", v, region, got, err)
	}
	if d := diffPhone(got, want); d != "" {
		t.Fatalf("fast path and Parse differ on %q (region %s): %s", v, region, d)
	}
	return true
}

// checkValid fails t unless isValidNumber agrees with
// phonenumbers.IsValidNumber on num.
func checkValid(t *testing.T, num *phonenumbers.PhoneNumber) {
	t.Helper()
	if got, want := isValidNumber(num), phonenumbers.IsValidNumber(num); got != want {
		t.Fatalf("isValidNumber(%v) = %v, phonenumbers.IsValidNumber %v", num, got, want)
	}
}

// TestIsValidNumberRandom compares isValidNumber with IsValidNumber on
// numbers of every calling code (and some unknown ones), of every length,
// with and without leading zeros, and on every region's example numbers.
func TestIsValidNumberRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	var codes []int
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		codes = append(codes, cc)
	}
	sort.Ints(codes)
	codes = append(codes, 0, 999, 2, 28)
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	for i := 0; i < n; i++ {
		cc := codes[rng.IntN(len(codes))]
		nsn := fmt.Sprint(rng.Int64N(1e17))
		nsn = nsn[:1+rng.IntN(len(nsn))]
		zeros := 0
		if rng.IntN(6) == 0 {
			zeros = 1 + rng.IntN(3)
		}
		national, _ := strconv.ParseUint(nsn, 10, 64)
		num := newPhoneNumber(int32(cc), national, strings.Repeat("0", zeros)+nsn)
		checkValid(t, num)
	}
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	for _, region := range supportedRegions() {
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForType(region, typ); ex != nil {
				checkValid(t, ex)
				national := ex.GetNationalNumber()
				for _, d := range []uint64{1, 7, 10, 100} {
					checkValid(t, newPhoneNumber(ex.GetCountryCode(), national+d, fmt.Sprint(national+d)))
					checkValid(t, newPhoneNumber(ex.GetCountryCode(), national/10, fmt.Sprint(national/10)))
				}
			}
		}
	}
	for _, cc := range codes {
		if ex := phonenumbers.GetExampleNumberForNonGeoEntity(cc); ex != nil {
			checkValid(t, ex)
		}
	}
}

// phoneChars are the 16 characters fuzzed values are built from: every
// character the fast path accepts.
const phoneChars = "0123456789 ()-.+"

func phoneLike(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(phoneChars[c&15])
		sb.WriteByte(phoneChars[c>>4])
	}
	return sb.String()
}

// FuzzPhoneFastPath: whatever the value and the default region, the fast
// path either declines or returns exactly what phonenumbers.Parse returns.
// With mapped, each input byte becomes two characters the fast path
// accepts (see phoneChars), so most inputs reach it; without, the bytes are
// used as they are. Run with go test -fuzz FuzzPhoneFastPath
// ./normalize/; the seeds run in the normal suite.
func FuzzPhoneFastPath(f *testing.F) {
	for _, s := range []string{
		"(41) 97798-6490", "+55 41 97798-6490", "041 97798 6490", "55 41 97798 6490",
		"0 21 41 97798 6490", "90 21 41 977986490", "0055 41 97798 6490", "+1 (212) 555-0100",
		"212.555.0100", "1 212 555 0100", "011 44 20 7946 0958", "+44 20 7946 0958",
		"020 7946 0958", "+39 06 1234 5678", "06 1234 5678", "+800 1234 5678", "+882 13 1234 5678",
		"15", "1 2", "+0 41 97798 6490", "++55 41 97798 6490", "(+55) 41 97798 6490",
		"11 9 9999 9999", "+54 9 11 1234 5678", "011 15 1234 5678", "8 (495) 123-45-67",
	} {
		for _, r := range []string{"BR", "US", "GB", "IT", "AR", "RU", "DE"} {
			f.Add([]byte(s), regionIndex(r), false)
		}
	}
	f.Add([]byte{0x41, 0x79, 0x97, 0x86, 0x94}, uint16(0), true)
	f.Fuzz(func(t *testing.T, b []byte, region uint16, mapped bool) {
		if len(b) > 300 {
			return
		}
		regions := supportedRegions()
		r := regions[int(region)%len(regions)]
		v := string(b)
		if mapped {
			v = phoneLike(b)
		}
		checkFastPath(t, v, r)
	})
}

func regionIndex(r string) uint16 {
	for i, x := range supportedRegions() {
		if x == r {
			return uint16(i)
		}
	}
	panic("unknown region " + r)
}

// TestPhoneFastPathRandom compares the fast path with Parse on numbers the
// way people write them, in every region: each region's example numbers of
// every type, in national, international and E.164 form, with separators
// shuffled, with the region's national and international prefixes, with
// the country code but no '+', and with digits changed.
func TestPhoneFastPathRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	perRegion := 12
	if testing.Short() || raceEnabled {
		perRegion = 8
	}
	var tried, fast int
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE,
		phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.VOIP, phonenumbers.UAN}
	for _, region := range supportedRegions() {
		var examples []*phonenumbers.PhoneNumber
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForType(region, typ); ex != nil {
				examples = append(examples, ex)
			}
		}
		if len(examples) == 0 {
			continue
		}
		for i := 0; i < perRegion; i++ {
			ex := examples[rng.IntN(len(examples))]
			v := writePhone(rng, ex, region)
			// Test both in the number's own region and in another one.
			for _, r := range []string{region, supportedRegions()[rng.IntN(len(supportedRegions()))]} {
				tried++
				if checkFastPath(t, v, r) {
					fast++
				}
			}
		}
	}
	t.Logf("fast path took %d of %d values", fast, tried)
	if fast < tried/2 {
		t.Errorf("fast path took only %d of %d plainly written numbers", fast, tried)
	}
}

// writePhone writes num the way a person or a system might.
func writePhone(rng *rand.Rand, num *phonenumbers.PhoneNumber, region string) string {
	var s string
	switch rng.IntN(6) {
	case 0:
		s = phonenumbers.Format(num, phonenumbers.NATIONAL)
	case 1:
		s = phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
	case 2:
		s = phonenumbers.Format(num, phonenumbers.E164)
	case 3:
		// Country code without '+'.
		s = phonenumbers.Format(num, phonenumbers.E164)[1:]
	case 4:
		// International prefix.
		if out := phonenumbers.FormatOutOfCountryCallingNumber(num, "US"); out != "" {
			s = out
		} else {
			s = phonenumbers.Format(num, phonenumbers.E164)
		}
	default:
		// National significant number, maybe with the national prefix.
		s = phonenumbers.GetNationalSignificantNumber(num)
		if ndd := phonenumbers.GetNddPrefixForRegion(region, true); ndd != "" && rng.IntN(2) == 0 {
			s = ndd + s
		}
	}
	b := []byte(s)
	// Change a digit or two, reshuffle the separators.
	for n := rng.IntN(3); n > 0; n-- {
		if i := rng.IntN(len(b)); b[i] >= '0' && b[i] <= '9' {
			b[i] = byte('0' + rng.IntN(10))
		}
	}
	if rng.IntN(3) == 0 {
		var out []byte
		for _, c := range b {
			switch {
			case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
				if rng.IntN(2) == 0 {
					continue
				}
				c = " -.()"[rng.IntN(5)]
			}
			out = append(out, c)
			if rng.IntN(8) == 0 {
				out = append(out, " -."[rng.IntN(3)])
			}
		}
		b = out
	}
	return string(b)
}

// TestPhoneFastPathTakesCommonShapes: the shapes the fast path exists for
// do take it.
func TestPhoneFastPathTakesCommonShapes(t *testing.T) {
	for _, tc := range []struct{ v, region string }{
		{"(41) 97798-6490", "BR"}, {"41977986490", "BR"}, {"+55 41 97798-6490", "BR"},
		{"+5541977986490", "BR"}, {"041 97798 6490", "BR"}, {"55 41 97798 6490", "BR"},
		{"+1 (212) 555-0100", "US"}, {"212.555.0100", "US"}, {"1 212 555 0100", "US"},
		{"+44 20 7946 0958", "BR"}, {"020 7946 0958", "GB"},
	} {
		if !checkFastPath(t, tc.v, tc.region) {
			t.Errorf("%q (region %s) did not take the fast path", tc.v, tc.region)
		}
	}
}

// TestIdentifierFastPathSame compares Identifier with and without the fast
// path and the memo on random phone-like values: same value, same error
// (reason, message, value).
func TestIdentifierFastPathSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 1000
	if testing.Short() || raceEnabled {
		n = 500
	}
	for _, region := range []string{"BR", "US", "GB", "AR", "IT"} {
		fast := mustNew(t, Config{DefaultRegion: region, Blocked: []string{"+5511988887777"}})
		slow := mustNew(t, Config{DefaultRegion: region, Blocked: []string{"+5511988887777"}, PhoneCacheSize: -1})
		slow.phones, slow.valid = nil, phonenumbers.IsValidNumber
		for i := 0; i < n; i++ {
			b := make([]byte, 3+rng.IntN(9))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			v := phoneLike(b)
			switch rng.IntN(4) {
			case 0:
				v = "0" + v
			case 1:
				v = "+" + v
			}
			if rng.IntN(5) == 0 {
				v = " " + v + "\t"
			}
			for _, typ := range []string{"phone", "whatsapp"} {
				// Twice: the second call is answered by the memo.
				for k := 0; k < 2; k++ {
					got, gerr := fast.Identifier(typ, v)
					want, werr := slow.Identifier(typ, v)
					if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
						t.Fatalf("region %s, Identifier(%q, %q) = %q, %v; without fast path and memo %q, %v", region, typ, v, got, gerr, want, werr)
					}
					if gerr != nil {
						ge, we := gerr.(*Error), werr.(*Error)
						if *ge != *we {
							t.Fatalf("region %s, Identifier(%q, %q): error %+v, want %+v", region, typ, v, *ge, *we)
						}
					}
				}
			}
		}
	}
}

func TestPhoneCacheBounded(t *testing.T) {
	n := mustNew(t, Config{PhoneCacheSize: 1000})
	for i := 0; i < 20000; i++ {
		n.Identifier("phone", fmt.Sprintf("(41) 9%04d-%04d", i%10000, i))
	}
	if got := n.cache.len(); got > 1000 || got < 500 {
		t.Fatalf("cache holds %d entries, want between 500 and 1000", got)
	}
	// A value used all along stays.
	k := phoneKey{raw: "(41) 97798-6490"}
	for i := 0; i < 5000; i++ {
		if _, err := n.Identifier("phone", k.raw); err != nil {
			t.Fatal(err)
		}
		n.Identifier("phone", fmt.Sprintf("(41) 98%03d-%04d", i%1000, i))
		if _, ok := n.cache.get(k); !ok {
			t.Fatalf("a value used on every round was evicted after %d rounds", i)
		}
	}
	off := mustNew(t, Config{PhoneCacheSize: -1})
	if off.cache != nil {
		t.Fatal("PhoneCacheSize -1 did not turn the memo off")
	}
}

// TestPhoneCacheErrorsAreCopies: a remembered error is a fresh *Error on
// every call, carrying the value as given.
func TestPhoneCacheErrorsAreCopies(t *testing.T) {
	n := mustNew(t, Config{})
	_, err1 := n.Identifier("phone", "123")
	_, err2 := n.Identifier("phone", "123")
	e1, e2 := err1.(*Error), err2.(*Error)
	if e1 == e2 {
		t.Fatal("the same *Error was returned twice")
	}
	e1.Message = "changed"
	if e2.Message == "changed" || e2.Value != "123" || e2.Reason != ReasonInvalidPhone {
		t.Fatalf("second error = %+v", *e2)
	}
	_, err3 := n.Identifier("phone", "123")
	if err3.(*Error).Message == "changed" {
		t.Fatal("changing a returned error changed the memo")
	}
}

// BenchmarkPhone: one phone value through the memo (hit), through the fast
// path (memo off), and through phonenumbers.Parse (both off).
func BenchmarkPhone(b *testing.B) {
	memo := mustNew(b, Config{})
	fast := mustNew(b, Config{PhoneCacheSize: -1})
	slow := mustNew(b, Config{PhoneCacheSize: -1})
	slow.phones, slow.valid = nil, phonenumbers.IsValidNumber
	for _, v := range []string{"(41) 97798-6490", "+5511987654321", "0044 20 7946 0958"} {
		for _, bc := range []struct {
			name string
			n    *Normalizer
		}{{"memo", memo}, {"fast", fast}, {"parse", slow}} {
			b.Run(bc.name+"/"+v, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bc.n.Identifier("phone", v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
