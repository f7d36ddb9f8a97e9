package partners

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	ok := Partner{Name: "demo", Tenant: "demo", Keys: []string{"demo-key"}}
	tests := []struct {
		name    string
		ps      []Partner
		wantErr string
	}{
		{"ok", []Partner{ok}, ""},
		{"none", nil, "no partners"},
		{"bad name", []Partner{{Name: "Demo!", Tenant: "t", Keys: []string{"12345678"}}}, "name"},
		{"no tenant", []Partner{{Name: "a", Keys: []string{"12345678"}}}, "no tenant"},
		{"no keys", []Partner{{Name: "a", Tenant: "t"}}, "no keys"},
		{"short key", []Partner{{Name: "a", Tenant: "t", Keys: []string{"short"}}}, "at least 8"},
		{"duplicate name", []Partner{ok, ok}, "twice"},
		{"shared key", []Partner{ok, {Name: "b", Tenant: "t", Keys: []string{"demo-key"}}}, "share a key"},
		{"signing secret not base64", []Partner{{Name: "a", Tenant: "t", Keys: []string{"12345678"}, SigningSecret: "my-secret"}}, `partner "a": signing_secret is not base64`},
		{"whsec_ secret not base64", []Partner{{Name: "a", Tenant: "t", Keys: []string{"12345678"}, SigningSecret: "whsec_my-secret"}}, "signing_secret is not base64"},
		{"empty whsec_ secret", []Partner{{Name: "a", Tenant: "t", Keys: []string{"12345678"}, SigningSecret: "whsec_"}}, "decodes to no bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.ps)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestSigningKey: a signing secret is base64 with or without the "whsec_"
// prefix, as the Standard Webhooks reference library reads it; the secret of
// the reference test suite (libraries/go/webhook_test.go) gives the same key
// both ways.
func TestSigningKey(t *testing.T) {
	const refSecret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	want, err := base64.StdEncoding.DecodeString(refSecret)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New([]Partner{
		{Name: "bare", Tenant: "t", Keys: []string{"key-of-bare"}, SigningSecret: refSecret},
		{Name: "prefixed", Tenant: "t", Keys: []string{"key-of-prefixed"}, SigningSecret: "whsec_" + refSecret},
		{Name: "unsigned", Tenant: "t", Keys: []string{"key-of-unsigned"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bare", "prefixed"} {
		p, _ := r.ByName(name)
		if !bytes.Equal(p.SigningKey(), want) {
			t.Errorf("%s: key = %x, want %x", name, p.SigningKey(), want)
		}
	}
	if p, _ := r.ByName("unsigned"); p.SigningKey() != nil {
		t.Errorf("unsigned partner has a signing key %x", p.SigningKey())
	}
	// The migration of docs/events.md: a partner signing with the raw text
	// "my-secret" is configured with whsec_ and the text's base64.
	if k, err := ParseSigningSecret("whsec_bXktc2VjcmV0"); err != nil || string(k) != "my-secret" {
		t.Errorf("whsec_bXktc2VjcmV0 = %q, %v; want my-secret", k, err)
	}
	_, err = New([]Partner{{Name: "a", Tenant: "t", Keys: []string{"12345678"}, SigningSecret: "not-base64-secret"}})
	if err == nil || strings.Contains(err.Error(), "not-base64-secret") {
		t.Fatalf("err = %v, want an error that does not quote the secret", err)
	}
}

func TestLookupAndLimits(t *testing.T) {
	r, err := New([]Partner{
		{Name: "a", Tenant: "ta", Keys: []string{"key-of-a-1", "key-of-a-2"}},
		{Name: "b", Tenant: "tb", Keys: []string{"key-of-b-1"}, RateLimit: RateLimit{RPS: -1}},
		{Name: "c", Tenant: "tb", Keys: []string{"key-of-c-1"}, RateLimit: RateLimit{RPS: 5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"key-of-a-1": "a", "key-of-a-2": "a", "key-of-b-1": "b"} {
		p, ok := r.ByKey(key)
		if !ok || p.Name != want {
			t.Errorf("ByKey(%q) = %v, want %s", key, p, want)
		}
	}
	if p, _ := r.ByKey("key-of-b-1"); p.Tenant != "tb" {
		t.Errorf("tenant of b = %q", p.Tenant)
	}
	if _, ok := r.ByKey("key-of-a-"); ok {
		t.Error("a prefix of a key matched")
	}
	a, _ := r.ByName("a")
	if a.RateLimit != (RateLimit{RPS: DefaultRPS, Burst: DefaultBurst}) {
		t.Errorf("default rate limit = %+v", a.RateLimit)
	}
	c, _ := r.ByName("c")
	if c.RateLimit.Burst != 5 {
		t.Errorf("burst defaults to rps: %+v", c.RateLimit)
	}
	b, _ := r.ByName("b")
	for i := 0; i < 10000; i++ {
		if !b.Limiter().Allow() {
			t.Fatal("unlimited partner was limited")
		}
	}
	if names := r.All(); len(names) != 3 || names[0].Name != "a" || names[2].Name != "c" {
		t.Errorf("All = %v", names)
	}
}

func TestAuthenticate(t *testing.T) {
	tests := []struct {
		authorization string
		partner       string
		err           error
	}{
		{"Bearer crm-key-123", "crm", nil},
		{"Bearer  crm-key-123\t", "crm", nil}, // white space around the key
		{"", "", ErrMissingCredential},
		{"Bearer", "", ErrMissingCredential},
		{"Bearer ", "", ErrMissingCredential},
		{"bearer crm-key-123", "", ErrMissingCredential}, // the scheme as written
		{"Basic Y3JtOmNybS1rZXktMTIz", "", ErrMissingCredential},
		{"crm-key-123", "", ErrMissingCredential},
		{"Bearer   ", "", ErrUnknownKey},
		{"Bearer crm-key-12", "", ErrUnknownKey},
		{"Bearer crm-key-1234", "", ErrUnknownKey},
		{"Bearer Crm-key-123", "", ErrUnknownKey},
	}
	reg, err := New([]Partner{{Name: "crm", Tenant: "acme", Keys: []string{"crm-key-123"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.authorization, func(t *testing.T) {
			p, err := reg.Authenticate(tt.authorization)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				if p != nil {
					t.Fatalf("partner %q with error %v", p.Name, err)
				}
				return
			}
			if p == nil || p.Name != tt.partner || p.Tenant != "acme" {
				t.Fatalf("partner = %+v, want %s", p, tt.partner)
			}
		})
	}
}
