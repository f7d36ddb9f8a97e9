package normalize

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func mustNew(t testing.TB, cfg Config) *Normalizer {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return n
}

type idCase struct {
	name   string
	typ    string
	value  string
	want   string // expected output when reason == ""
	reason string // expected Error.Reason, "" for success
}

func runCases(t *testing.T, n *Normalizer, cases []idCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := n.Identifier(tc.typ, tc.value)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Identifier(%q, %q) error: %v", tc.typ, tc.value, err)
				}
				if got != tc.want {
					t.Fatalf("Identifier(%q, %q) = %q, want %q", tc.typ, tc.value, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Identifier(%q, %q) = %q, want error %q", tc.typ, tc.value, got, tc.reason)
			}
			if got != "" {
				t.Errorf("Identifier(%q, %q) returned %q along with an error", tc.typ, tc.value, got)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			if e.Reason != tc.reason {
				t.Fatalf("Identifier(%q, %q) reason = %q (%v), want %q", tc.typ, tc.value, e.Reason, err, tc.reason)
			}
			if e.Value != tc.value {
				t.Errorf("Error.Value = %q, want %q", e.Value, tc.value)
			}
			if e.Message == "" || err.Error() != e.Message {
				t.Errorf("Error() = %q, Message = %q", err.Error(), e.Message)
			}
			if tc.reason != ReasonEmpty && tc.reason != ReasonTooLong &&
				tc.reason != ReasonUnknownIdentifierType && !strings.Contains(e.Message, strconv.Quote(clip(tc.value))) {
				t.Errorf("Message %q does not name the value %q", e.Message, tc.value)
			}
			if tc.reason != ReasonUnknownIdentifierType && !strings.Contains(e.Message, e.Type) {
				t.Errorf("Message %q does not name the type %q", e.Message, e.Type)
			}
		})
	}
}

func TestIdentifier(t *testing.T) {
	n := mustNew(t, Config{})
	long := strings.Repeat("a", MaxValueLen+1)
	exact := strings.Repeat("a", MaxValueLen)
	runCases(t, n, []idCase{
		// Common rules.
		{"empty", "user_id", "", "", ReasonEmpty},
		{"whitespace only", "email", " \t\n\u00a0\u3000", "", ReasonEmpty},
		{"zero width only", "user_id", "\u200b\ufeff", "", ReasonEmpty},
		{"too long", "user_id", long, "", ReasonTooLong},
		{"too long email", "email", strings.Repeat("a", 250) + "@example.com", "", ReasonTooLong},
		{"max length ok", "user_id", "  " + exact + "  ", exact, ""},
		{"unknown type", "twitter", "x", "", ReasonUnknownIdentifierType},
		{"empty type", "", "x", "", ReasonUnknownIdentifierType},

		// Type names are normalised.
		{"type trimmed and lowercased", "  EMAIL ", "a@b.com", "a@b.com", ""},

		// Blocklist, any type.
		{"blocked null", "user_id", "null", "", ReasonBlocked},
		{"blocked NULL uppercase", "user_id", " NULL ", "", ReasonBlocked},
		{"blocked undefined", "anonymous_id", "undefined", "", ReasonBlocked},
		{"blocked n/a", "facebook", "N/A", "", ReasonBlocked},
		{"blocked na", "user_id", "na", "", ReasonBlocked},
		{"blocked nil", "user_id", "nil", "", ReasonBlocked},
		{"blocked none", "user_id", "None", "", ReasonBlocked},
		{"blocked 0", "user_id", "0", "", ReasonBlocked},
		{"blocked -1", "user_id", "-1", "", ReasonBlocked},
		{"blocked anonymous", "anonymous_id", "Anonymous", "", ReasonBlocked},
		{"blocked unknown", "external:crm", "unknown", "", ReasonBlocked},
		{"blocked object", "user_id", "[object Object]", "", ReasonBlocked},
		{"blocked test", "user_id", "TEST", "", ReasonBlocked},
		{"blocked all zeros", "user_id", "000", "", ReasonBlocked},
		{"blocked all zeros long", "external:crm", "0000000", "", ReasonBlocked},
		{"blocked null phone", "phone", "null", "", ReasonBlocked},
		{"blocked undefined email", "email", "undefined", "", ReasonBlocked},
		{"not blocked 00a", "user_id", "00a", "00a", ""},
		{"not blocked substring", "user_id", "nullable", "nullable", ""},

		// Email.
		{"email plain", "email", "ana@example.com", "ana@example.com", ""},
		{"email uppercase", "email", "Ana.Silva@Example.COM", "ana.silva@example.com", ""},
		{"email surrounding spaces", "email", "  ana@example.com \n", "ana@example.com", ""},
		{"email plus tag", "email", "ana+promo@mail.example.com.br", "ana+promo@mail.example.com.br", ""},
		{"email idn", "email", "joão@exemplo.com.br", "joão@exemplo.com.br", ""},
		{"email inner space", "email", "ana silva@example.com", "", ReasonInvalidEmail},
		{"email space before at", "email", "ana @example.com", "", ReasonInvalidEmail},
		{"email display name", "email", "Ana <ana@example.com>", "", ReasonInvalidEmail},
		{"email quoted display name", "email", `"Ana" <ana@example.com>`, "", ReasonInvalidEmail},
		{"email angle brackets", "email", "<ana@example.com>", "", ReasonInvalidEmail},
		{"email comment", "email", "ana(x)@example.com", "", ReasonInvalidEmail},
		{"email quoted local", "email", `"ana.silva"@example.com`, "", ReasonInvalidEmail},
		{"email no at", "email", "ana.example.com", "", ReasonInvalidEmail},
		{"email two ats", "email", "ana@b@example.com", "", ReasonInvalidEmail},
		{"email no domain dot", "email", "ana@localhost", "", ReasonInvalidEmail},
		{"email empty local", "email", "@example.com", "", ReasonInvalidEmail},
		{"email empty domain", "email", "ana@", "", ReasonInvalidEmail},
		{"email empty label", "email", "ana@example..com", "", ReasonInvalidEmail},
		{"email trailing dot", "email", "ana@example.com.", "", ReasonInvalidEmail},
		{"email leading dot", "email", "ana@.example.com", "", ReasonInvalidEmail},
		{"email label leading hyphen", "email", "ana@-example.com", "", ReasonInvalidEmail},
		{"email label trailing hyphen", "email", "ana@example-.com", "", ReasonInvalidEmail},
		{"email underscore domain", "email", "ana@exa_mple.com", "", ReasonInvalidEmail},
		{"email ip literal", "email", "ana@[10.0.0.1]", "", ReasonInvalidEmail},
		{"email numeric tld", "email", "ana@10.0.0.1", "", ReasonInvalidEmail},
		{"email double dot local", "email", "ana..silva@example.com", "", ReasonInvalidEmail},
		{"email local too long", "email", strings.Repeat("a", 65) + "@example.com", "", ReasonInvalidEmail},
		{"email local max", "email", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com", ""},
		{"email invalid utf8", "email", "an\xffa@example.com", "", ReasonInvalidEmail},
		{"email blocked", "email", "test@test.com", "", ReasonBlocked},
		{"email blocked uppercase", "email", " Test@Example.com ", "", ReasonBlocked},
		{"email blocked example", "email", "example@example.com", "", ReasonBlocked},
		{"email blocked email@email", "email", "EMAIL@EMAIL.COM", "", ReasonBlocked},
		{"email blocked noemail", "email", "noemail@noemail.com", "", ReasonBlocked},
		{"email blocked no@email", "email", "no@email.com", "", ReasonBlocked},
		{"email blocked asdf", "email", "asdf@asdf.com", "", ReasonBlocked},

		// Phone (default region BR).
		{"phone BR mobile international", "phone", "+55 11 91234-5678", "+5511912345678", ""},
		{"phone BR mobile local", "phone", "(11) 91234-5678", "+5511912345678", ""},
		{"phone BR digits only", "phone", "11912345678", "+5511912345678", ""},
		{"phone BR with trunk prefix", "phone", "011 91234-5678", "+5511912345678", ""},
		{"phone BR country code without plus", "phone", "5511912345678", "+5511912345678", ""},
		{"phone BR landline", "phone", "+55 61 3333-4455", "+556133334455", ""},
		{"phone BR already e164", "phone", "+5511912345678", "+5511912345678", ""},
		{"phone foreign with plus", "phone", "+1 415 555 2671", "+14155552671", ""},
		{"phone 00 international", "phone", "0044 20 7946 0958", "+442079460958", ""},
		{"phone 00 carrier code", "phone", "0021 1 212 555 1234", "+12125551234", ""},
		{"phone tel uri", "phone", "tel:+55-11-91234-5678", "+5511912345678", ""},
		{"phone too short", "phone", "12345", "", ReasonInvalidPhone},
		{"phone letters", "phone", "not a phone", "", ReasonInvalidPhone},
		{"phone invalid area", "phone", "(20) 91234-5678", "", ReasonInvalidPhone},
		{"phone US without plus in BR", "phone", "14155552671", "", ReasonInvalidPhone},
		{"phone email", "phone", "ana@example.com", "", ReasonInvalidPhone},
		{"phone all zeros", "phone", "0000000000", "", ReasonBlocked},
		{"phone all ones", "phone", "1111111111", "", ReasonBlocked},
		{"phone all nines", "phone", "9999999999", "", ReasonBlocked},
		{"phone all nines formatted", "phone", "(99) 99999-9999", "", ReasonBlocked},
		{"phone all ones plus", "phone", "+1 111 111 1111", "", ReasonBlocked},
		{"phone ascending 9", "phone", "123456789", "", ReasonBlocked},
		{"phone ascending 8", "phone", "12345678", "", ReasonBlocked},
		{"phone ascending wraps", "phone", "1234567890", "", ReasonBlocked},
		{"phone ascending formatted", "phone", "(12) 3456-7890", "", ReasonBlocked},
		{"phone placeholder subscriber", "phone", "(11) 99999-9999", "", ReasonBlocked},
		{"phone placeholder subscriber e164", "phone", "+5511999999999", "", ReasonBlocked},
		{"phone placeholder ascending subscriber", "phone", "(11) 2345-6789", "", ReasonBlocked},

		// WhatsApp: same as phone, plus wa_id form (international digits, no "+").
		{"whatsapp BR", "whatsapp", "+55 11 91234-5678", "+5511912345678", ""},
		{"whatsapp local", "whatsapp", "(11) 91234-5678", "+5511912345678", ""},
		{"whatsapp wa_id BR", "whatsapp", "5511912345678", "+5511912345678", ""},
		{"whatsapp wa_id US", "whatsapp", "14155552671", "+14155552671", ""},
		{"whatsapp invalid", "whatsapp", "12345", "", ReasonInvalidPhone},
		{"whatsapp placeholder", "whatsapp", "11111111111", "", ReasonBlocked},

		// Opaque ids: trimmed, case preserved.
		{"user_id case preserved", "user_id", "  AbC-123 ", "AbC-123", ""},
		{"user_id inner space kept", "user_id", "a b", "a b", ""},
		{"anonymous_id uuid", "anonymous_id", "\t6F9619FF-8B86-D011-B42D-00C04FC964FF\n", "6F9619FF-8B86-D011-B42D-00C04FC964FF", ""},
		{"facebook", "facebook", " 1002003004 ", "1002003004", ""},
		{"facebook nbsp", "facebook", "\u00a0PSID42\u2003", "PSID42", ""},
		{"external", "external:shopify", " Cust_9 ", "Cust_9", ""},
		{"external uppercase type", "External:Shopify", "x", "x", ""},
		{"external bad name", "external:", "x", "", ReasonUnknownIdentifierType},
	})
}

func TestIdentifierRegionUS(t *testing.T) {
	n := mustNew(t, Config{DefaultRegion: "us"})
	if n.Region() != "US" {
		t.Fatalf("Region() = %q, want US", n.Region())
	}
	runCases(t, n, []idCase{
		{"US local", "phone", "(415) 555-2671", "+14155552671", ""},
		{"US dashes", "phone", "415-555-2671", "+14155552671", ""},
		{"US with 1", "phone", "1 415 555 2671", "+14155552671", ""},
		{"BR international", "phone", "+55 11 91234-5678", "+5511912345678", ""},
		{"BR local is not US", "phone", "(11) 91234-5678", "", ReasonInvalidPhone},
		{"US 011 international", "phone", "011 55 11 91234 5678", "+5511912345678", ""},
		{"US 00 international", "phone", "0055 11 91234 5678", "+5511912345678", ""},
		{"US placeholder subscriber", "phone", "(415) 555-5555", "", ReasonBlocked},
	})
}

func TestType(t *testing.T) {
	n := mustNew(t, Config{})
	ok := map[string]string{
		"email":                               "email",
		" Phone ":                             "phone",
		"USER_ID":                             "user_id",
		"anonymous_id":                        "anonymous_id",
		"WhatsApp":                            "whatsapp",
		"facebook\n":                          "facebook",
		"external:crm":                        "external:crm",
		"EXTERNAL:Shopify":                    "external:shopify",
		"external:a":                          "external:a",
		"external:0":                          "external:0",
		"external:my_crm.v2-eu":               "external:my_crm.v2-eu",
		"external:" + strings.Repeat("x", 64): "external:" + strings.Repeat("x", 64),
	}
	for in, want := range ok {
		t.Run("ok "+in, func(t *testing.T) {
			got, err := n.Type(in)
			if err != nil || got != want {
				t.Fatalf("Type(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
	bad := []string{
		"", " ", "mail", "e-mail", "emails", "external", "external:", "external:_crm",
		"external:-crm", "external:.crm", "external:c rm", "external:crm/x", "external:crm:x",
		"external:" + strings.Repeat("x", 65), "external:ç", "twitter", "user id",
	}
	for _, in := range bad {
		t.Run("bad "+in, func(t *testing.T) {
			got, err := n.Type(in)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Type(%q) = %q, %v; want *Error", in, got, err)
			}
			if e.Reason != ReasonUnknownIdentifierType || e.Type != in || got != "" {
				t.Fatalf("Type(%q): got %q, %+v", in, got, e)
			}
			if !strings.Contains(e.Error(), "unknown identifier type") {
				t.Fatalf("Error() = %q", e.Error())
			}
		})
	}
}

func TestCustomBlocked(t *testing.T) {
	n := mustNew(t, Config{Blocked: []string{"  Guest ", "NOBODY@Example.com", "+55 (11) 98888-7777", "", "  "}})
	runCases(t, n, []idCase{
		{"custom exact", "user_id", "guest", "", ReasonBlocked},
		{"custom case-insensitive", "anonymous_id", "GUEST", "", ReasonBlocked},
		{"custom email", "email", "nobody@example.com", "", ReasonBlocked},
		{"custom email uppercase", "email", " Nobody@EXAMPLE.com", "", ReasonBlocked},
		{"custom phone by e164", "phone", "(11) 98888-7777", "", ReasonBlocked},
		{"custom phone as given", "phone", "+55 (11) 98888-7777", "", ReasonBlocked},
		{"defaults kept", "user_id", "null", "", ReasonBlocked},
		{"zeros kept", "user_id", "00", "", ReasonBlocked},
		{"others pass", "user_id", "guest2", "guest2", ""},
		{"other phone passes", "phone", "(11) 98888-7778", "+5511988887778", ""},
	})
}

func TestNoDefaultBlocklist(t *testing.T) {
	n := mustNew(t, Config{NoDefaultBlocklist: true, Blocked: []string{"guest"}})
	runCases(t, n, []idCase{
		{"null allowed", "user_id", "null", "null", ""},
		{"zero allowed", "user_id", "0", "0", ""},
		{"zeros allowed", "user_id", "000", "000", ""},
		{"test email allowed", "email", "Test@Test.com", "test@test.com", ""},
		{"custom still blocked", "user_id", "Guest", "", ReasonBlocked},
		{"placeholder phone still blocked", "phone", "9999999999", "", ReasonBlocked},
		{"empty still rejected", "user_id", " ", "", ReasonEmpty},
	})
}

func TestNewConfig(t *testing.T) {
	for _, region := range []string{"XX", "ZZ", "001", "Brazil", "B"} {
		t.Run("bad region "+region, func(t *testing.T) {
			n, err := New(Config{DefaultRegion: region})
			if err == nil || n != nil {
				t.Fatalf("New(region %q) = %v, %v; want error", region, n, err)
			}
			if !strings.Contains(err.Error(), region) {
				t.Fatalf("error %q does not name the region", err)
			}
		})
	}
	for _, region := range []string{"", "BR", "br", " us ", "PT", "GB"} {
		t.Run("good region "+region, func(t *testing.T) {
			if _, err := New(Config{DefaultRegion: region}); err != nil {
				t.Fatalf("New(region %q): %v", region, err)
			}
		})
	}
	t.Run("default config", func(t *testing.T) {
		c := DefaultConfig()
		if c.DefaultRegion != "BR" {
			t.Fatalf("DefaultConfig().DefaultRegion = %q", c.DefaultRegion)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		var zero Config
		if err := zero.Validate(); err != nil {
			t.Fatalf("zero Config Validate: %v", err)
		}
	})
	t.Run("blocked entry too long", func(t *testing.T) {
		if _, err := New(Config{Blocked: []string{strings.Repeat("x", MaxValueLen+1)}}); err == nil {
			t.Fatal("want error")
		}
	})
}

func TestDefaultBlockedIsCopy(t *testing.T) {
	a := DefaultBlocked()
	if len(a) == 0 {
		t.Fatal("empty default blocklist")
	}
	a[0] = "changed"
	if DefaultBlocked()[0] == "changed" {
		t.Fatal("DefaultBlocked returns the internal slice")
	}
	n := mustNew(t, Config{})
	for _, b := range DefaultBlocked() {
		if _, err := n.Identifier("user_id", b); err == nil {
			t.Errorf("default blocked value %q accepted", b)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	n := mustNew(t, Config{})
	_, err := n.Identifier("email", "Ana <ana@example.com>")
	want := `email value "Ana <ana@example.com>" is not a valid email address`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want prefix %q", err, want)
	}
	_, err = n.Identifier("phone", "12345")
	if err == nil || !strings.Contains(err.Error(), `phone value "12345"`) || !strings.Contains(err.Error(), "BR") {
		t.Fatalf("err = %v", err)
	}
	_, err = n.Identifier("nope", "x")
	var e *Error
	if !errors.As(err, &e) || e.Type != "nope" || e.Value != "x" {
		t.Fatalf("err = %#v", err)
	}
	// Long values are clipped in messages but kept whole in Value.
	long := strings.Repeat("é", 200)
	_, err = n.Identifier("user_id", long)
	if !errors.As(err, &e) || e.Reason != ReasonTooLong || e.Value != long || len(e.Message) > 200 {
		t.Fatalf("err = %v", err)
	}
	if e := (&Error{Type: "email", Value: "x", Reason: ReasonInvalidEmail}); !strings.Contains(e.Error(), "invalid_email") {
		t.Fatalf("Error() without Message = %q", e.Error())
	}
}

// TestNoPanic feeds odd inputs to every type; none may panic.
func TestNoPanic(t *testing.T) {
	n := mustNew(t, Config{})
	inputs := []string{
		"+", "++", "00", "0", "+0", "+00", "+999999999999999999999", "\xff\xfe", "@", "@@", ".", "a@.", "a@b.",
		"+55 11 91234-5678 ext. 99999999999999999999", "tel:", "tel:;", "ｔｅｌ", "＋５５ １１ ９１２３４ ５６７８",
		strings.Repeat("9", 256), strings.Repeat("+", 256), strings.Repeat("@", 256), "1" + strings.Repeat("0", 30),
	}
	types := []string{"email", "phone", "whatsapp", "user_id", "anonymous_id", "facebook", "external:x", "bogus"}
	for _, typ := range types {
		for _, in := range inputs {
			_, _ = n.Identifier(typ, in)
		}
	}
}

func TestConcurrent(t *testing.T) {
	n := mustNew(t, Config{Blocked: []string{"guest"}})
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 200; j++ {
				if v, err := n.Identifier("phone", "(11) 91234-5678"); err != nil || v != "+5511912345678" {
					t.Errorf("got %q, %v", v, err)
					return
				}
				if _, err := n.Identifier("email", "Guest"); err == nil {
					t.Errorf("blocked value accepted")
					return
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		<-done
	}
}

func BenchmarkIdentifier(b *testing.B) {
	n := mustNew(b, Config{})
	cases := []struct{ name, typ, value string }{
		{"email", "email", "ana.silva@example.com.br"},
		{"email_uppercase", "email", "  Ana.Silva@Example.com "},
		{"phone_e164", "phone", "+5511987654321"},
		{"phone_local", "phone", "(11) 98765-4321"},
		{"phone_00_international", "phone", "0044 20 7946 0958"},
		// The last digits are an ascending run, so this also pays for the
		// placeholder-subscriber check (national destination code lookup).
		{"phone_suspicious_tail", "phone", "+55 11 91234-5678"},
		{"user_id", "user_id", "u_12345"},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.Identifier(bc.typ, bc.value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
