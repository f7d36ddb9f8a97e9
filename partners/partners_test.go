package partners

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
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
		{"unknown scope", []Partner{{Name: "a", Tenant: "t", ScopedKeys: KeyList{{Key: "12345678", Scopes: []Scope{"profiles:delete"}}}}},
			`partner "a": key 1: unknown scope "profiles:delete" (valid: events:write, profiles:read, profiles:write, admin, topics:write)`},
		{"plain and scoped keys shared", []Partner{{Name: "a", Tenant: "t", Keys: []string{"12345678"}, ScopedKeys: KeyList{{Key: "12345678", Scopes: []Scope{ScopeAdmin}}}}}, "share a key"},
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
			pr, err := reg.Authenticate(tt.authorization)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				if pr.Partner != nil || pr.Scopes != nil {
					t.Fatalf("principal %+v with error %v", pr, err)
				}
				return
			}
			if p := pr.Partner; p == nil || p.Name != tt.partner || p.Tenant != "acme" {
				t.Fatalf("partner = %+v, want %s", p, tt.partner)
			}
			if !slices.Equal(pr.Scopes, DefaultScopes) {
				t.Fatalf("scopes of a plain key = %v, want %v", pr.Scopes, DefaultScopes)
			}
		})
	}
}

// A key's scopes come with it from Authenticate; two keys of one partner
// may differ; a key without scopes in Go has DefaultScopes.
func TestScopes(t *testing.T) {
	reg, err := New([]Partner{{Name: "crm", Tenant: "acme", Keys: []string{"plain-key-1"}, ScopedKeys: KeyList{
		{Key: "writer-key-1", Scopes: []Scope{ScopeProfilesWrite}},
		{Key: "all-scopes-1", Scopes: AllScopes},
		{Key: "no-scopes-1"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key       string
		has, lack []Scope
	}{
		{"plain-key-1", []Scope{ScopeEventsWrite, ScopeProfilesRead}, []Scope{ScopeProfilesWrite, ScopeAdmin, ScopeTopicsWrite}},
		{"writer-key-1", []Scope{ScopeProfilesWrite}, []Scope{ScopeEventsWrite, ScopeProfilesRead, ScopeAdmin}},
		{"all-scopes-1", AllScopes, nil},
		{"no-scopes-1", DefaultScopes, []Scope{ScopeProfilesWrite, ScopeAdmin}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			pr, err := reg.Authenticate("Bearer " + tt.key)
			if err != nil || pr.Partner.Name != "crm" {
				t.Fatalf("%+v, %v", pr, err)
			}
			for _, s := range tt.has {
				if !pr.Has(s) || pr.Require(s) != nil {
					t.Errorf("lacks %s", s)
				}
			}
			for _, s := range tt.lack {
				err := pr.Require(s)
				if pr.Has(s) || err == nil || !errors.Is(err, ErrForbidden) || err.Error() != "this key lacks the scope "+string(s) {
					t.Errorf("has %s (Require: %v)", s, err)
				}
			}
		})
	}
}

// keys: in the configuration file takes plain strings (DefaultScopes) and
// {key, scopes} objects; what is neither is an error naming the line.
func TestKeyListYAML(t *testing.T) {
	var ps []Partner
	err := yaml.Unmarshal([]byte(`
- name: crm
  tenant: acme
  keys:
    - plain-key-1
    - {key: writer-key-1, scopes: [profiles:write, profiles:read]}
`), &ps)
	if err != nil {
		t.Fatal(err)
	}
	want := KeyList{{Key: "plain-key-1", Scopes: DefaultScopes}, {Key: "writer-key-1", Scopes: []Scope{ScopeProfilesWrite, ScopeProfilesRead}}}
	if len(ps) != 1 || len(ps[0].Keys) != 0 || len(ps[0].ScopedKeys) != 2 ||
		!slices.Equal(ps[0].ScopedKeys[0].Scopes, want[0].Scopes) || ps[0].ScopedKeys[1].Key != want[1].Key || !slices.Equal(ps[0].ScopedKeys[1].Scopes, want[1].Scopes) {
		t.Fatalf("partners = %+v, want keys %+v", ps, want)
	}
	if _, err := New(ps); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ keys, want string }{
		{"keys: demo-key", "keys must be a list"},
		{"keys: [{key: writer-key-1}]", "keys[0] has no scopes: list them (events:write, profiles:read, profiles:write, admin, topics:write), or write the key as a plain string"},
		{"keys: [{key: writer-key-1, scopes: []}]", "has no scopes"},
		{"keys: [{key: writer-key-1, scope: [admin]}]", `keys[0]: unknown field "scope"`},
		{"keys: [{key: writer-key-1, scopes: admin}]", "keys[0].scopes must be a list of scopes"},
		{"keys: [[a, b]]", "keys[0] must be a string or {key: ..., scopes: [...]}"},
	}
	for _, tt := range bad {
		t.Run(tt.keys, func(t *testing.T) {
			var p Partner
			err := yaml.Unmarshal([]byte("name: a\ntenant: t\n"+tt.keys+"\n"), &p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
	// An unknown scope is the registry's error, naming the valid ones.
	var p Partner
	if err := yaml.Unmarshal([]byte("name: a\ntenant: t\nkeys: [{key: writer-key-1, scopes: [profiles:writ]}]\n"), &p); err != nil {
		t.Fatal(err)
	}
	if _, err := New([]Partner{p}); err == nil || !strings.Contains(err.Error(), `unknown scope "profiles:writ" (valid: events:write, profiles:read, profiles:write, admin, topics:write)`) {
		t.Fatalf("err = %v", err)
	}
}
