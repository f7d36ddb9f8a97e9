// Package partners is the registry of partners: who may send data, which
// tenant their credential is bound to, how they sign requests and how fast
// they may send.
package partners

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/time/rate"

	"github.com/rolodex/rolodex/schemas"
)

// Partner is one partner and its credentials. A partner belongs to exactly
// one tenant: everything it sends is attributed to that tenant.
type Partner struct {
	Name   string `yaml:"name"`
	Tenant string `yaml:"tenant"`
	// Keys are bearer keys with DefaultScopes (events:write,
	// profiles:read), for callers that build partners in Go.
	Keys []string `yaml:"-"`
	// ScopedKeys are the keys of the configuration file's `keys:`, each a
	// plain string (DefaultScopes) or {key: ..., scopes: [...]}; a key
	// here without scopes has DefaultScopes.
	ScopedKeys KeyList `yaml:"keys"`
	// SigningSecret, when set, makes request signatures (Standard Webhooks)
	// mandatory for this partner. It is base64, optionally prefixed with
	// "whsec_" (ParseSigningSecret); New refuses any other value.
	SigningSecret string    `yaml:"signing_secret"`
	RateLimit     RateLimit `yaml:"rate_limit"`
	// Timezone (IANA; empty: UTC) and WorkingHours ({"mon-fri":
	// "08:00-18:00"}; none: always open) are lead routing's
	// (docs/routing.md); cmd/rolodex checks them when it loads the
	// config.
	Timezone     string            `yaml:"timezone"`
	WorkingHours map[string]string `yaml:"working_hours"`
	// Delivery is how the partner receives the leads routed to it (a
	// webhook or its Kafka topic); nil: it does not receive leads.
	Delivery *schemas.PartnerDelivery `yaml:"delivery"`

	limiter    *rate.Limiter
	signingKey []byte
}

// RateLimit is a token bucket on requests per second. Zero RPS means the
// default (100 rps, burst 200); a negative RPS means unlimited.
type RateLimit struct {
	RPS   float64 `yaml:"rps"`
	Burst int     `yaml:"burst"`
}

// Default rate limit.
const (
	DefaultRPS   = 100
	DefaultBurst = 200
)

// AllKeys returns every key of the partner with its scopes: Keys (with
// DefaultScopes), then ScopedKeys.
func (p *Partner) AllKeys() []Key {
	out := make([]Key, 0, len(p.Keys)+len(p.ScopedKeys))
	for _, k := range p.Keys {
		out = append(out, Key{Key: k, Scopes: DefaultScopes})
	}
	for _, k := range p.ScopedKeys {
		if len(k.Scopes) == 0 {
			k.Scopes = DefaultScopes
		}
		out = append(out, k)
	}
	return out
}

// Routing returns the partner's routing configuration.
func (p *Partner) Routing() schemas.PartnerRouting {
	return schemas.PartnerRouting{Name: p.Name, Tenant: p.Tenant, Timezone: p.Timezone, WorkingHours: p.WorkingHours}
}

// Limiter returns the partner's token bucket.
func (p *Partner) Limiter() *rate.Limiter { return p.limiter }

// SigningKey returns the HMAC key of the partner's signing secret, or nil
// when the partner does not sign its requests.
func (p *Partner) SigningKey() []byte { return p.signingKey }

// signingSecretPrefix marks a Standard Webhooks signing secret.
const signingSecretPrefix = "whsec_"

// ParseSigningSecret returns the HMAC key of a Standard Webhooks signing
// secret: the base64 (standard alphabet, padded) after an optional "whsec_"
// prefix, as the reference library (standard-webhooks, libraries/go,
// NewWebhook) decodes it. A secret that is not base64, or decodes to no
// bytes, is an error.
func ParseSigningSecret(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, signingSecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("signing_secret is not base64 (%v); Standard Webhooks secrets are base64, optionally "+
			"prefixed with %q. A partner that signs with the raw text of this secret needs "+
			"signing_secret: %s<base64 of the text> (printf %%s 'the-secret' | base64)", err, signingSecretPrefix, signingSecretPrefix)
	}
	if len(k) == 0 {
		return nil, errors.New("signing_secret decodes to no bytes: a Standard Webhooks secret is base64 of 24 to 64 random bytes")
	}
	return k, nil
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Registry finds partners by key and by name. It is read-only after New and
// safe for concurrent use.
type Registry struct {
	byKey  map[[32]byte]Principal
	byName map[string]*Partner
}

// New validates the partners and builds the registry.
func New(ps []Partner) (*Registry, error) {
	r := &Registry{byKey: map[[32]byte]Principal{}, byName: map[string]*Partner{}}
	for i := range ps {
		p := ps[i]
		if !nameRe.MatchString(p.Name) {
			return nil, fmt.Errorf("partners: partner %d: name %q must match %s", i, p.Name, nameRe)
		}
		if _, dup := r.byName[p.Name]; dup {
			return nil, fmt.Errorf("partners: partner %q defined twice", p.Name)
		}
		if p.Tenant == "" {
			return nil, fmt.Errorf("partners: partner %q has no tenant", p.Name)
		}
		if !nameRe.MatchString(p.Tenant) {
			return nil, fmt.Errorf("partners: partner %q: tenant %q must match %s", p.Name, p.Tenant, nameRe)
		}
		keys := p.AllKeys()
		if len(keys) == 0 {
			return nil, fmt.Errorf("partners: partner %q has no keys", p.Name)
		}
		if p.SigningSecret != "" {
			k, err := ParseSigningSecret(p.SigningSecret)
			if err != nil {
				return nil, fmt.Errorf("partners: partner %q: %w", p.Name, err)
			}
			p.signingKey = k
		}
		rl := p.RateLimit
		if rl.RPS == 0 {
			rl = RateLimit{RPS: DefaultRPS, Burst: DefaultBurst}
		}
		if rl.Burst <= 0 {
			rl.Burst = max(1, int(rl.RPS))
		}
		p.RateLimit = rl
		if rl.RPS < 0 {
			p.limiter = rate.NewLimiter(rate.Inf, 1)
		} else {
			p.limiter = rate.NewLimiter(rate.Limit(rl.RPS), rl.Burst)
		}
		pp := &p
		for i, k := range keys {
			if len(k.Key) < 8 {
				return nil, fmt.Errorf("partners: partner %q: a key must have at least 8 characters", p.Name)
			}
			if err := checkScopes(k.Scopes); err != nil {
				return nil, fmt.Errorf("partners: partner %q: key %d: %w", p.Name, i+1, err)
			}
			h := sha256.Sum256([]byte(k.Key))
			if other, dup := r.byKey[h]; dup {
				return nil, fmt.Errorf("partners: partners %q and %q share a key", other.Partner.Name, p.Name)
			}
			r.byKey[h] = Principal{Partner: pp, Scopes: slices.Clone(k.Scopes)}
		}
		r.byName[p.Name] = pp
	}
	if len(r.byName) == 0 {
		return nil, errors.New("partners: no partners configured")
	}
	return r, nil
}

// ByKey returns the partner a bearer key belongs to. Keys are looked up by
// their SHA-256, so the lookup time does not depend on how much of a wrong
// key matches a right one.
func (r *Registry) ByKey(key string) (*Partner, bool) {
	p, ok := r.byKey[sha256.Sum256([]byte(key))]
	return p.Partner, ok
}

// Errors of Authenticate. Their text is the message the HTTP APIs answer
// 401 with.
var (
	ErrMissingCredential = errors.New("missing credential: send Authorization: Bearer <partner key>")
	ErrUnknownKey        = errors.New("unknown partner key")
)

// Authenticate returns the partner whose bearer key an Authorization header
// value ("Bearer <key>") carries, with that key's scopes. It returns
// ErrMissingCredential when the value is not "Bearer " and a key, and
// ErrUnknownKey when the key, without surrounding white space, is no
// partner's (looked up as ByKey does). It is the one bearer-key check of
// every HTTP API; each endpoint then checks its scope (Principal.Require).
func (r *Registry) Authenticate(authorization string) (Principal, error) {
	key, found := strings.CutPrefix(authorization, "Bearer ")
	if !found || key == "" {
		return Principal{}, ErrMissingCredential
	}
	p, found := r.byKey[sha256.Sum256([]byte(strings.TrimSpace(key)))]
	if !found {
		return Principal{}, ErrUnknownKey
	}
	return p, nil
}

// ByName returns the partner with that name.
func (r *Registry) ByName(name string) (*Partner, bool) {
	p, ok := r.byName[name]
	return p, ok
}

// All returns every partner, sorted by name.
func (r *Registry) All() []*Partner {
	out := make([]*Partner, 0, len(r.byName))
	for _, p := range r.byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
