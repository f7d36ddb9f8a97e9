// Package partners is the registry of partners: who may send data, which
// tenant their credential is bound to, how they sign requests and how fast
// they may send.
package partners

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/time/rate"
)

// Partner is one partner and its credentials. A partner belongs to exactly
// one tenant: everything it sends is attributed to that tenant.
type Partner struct {
	Name   string   `yaml:"name"`
	Tenant string   `yaml:"tenant"`
	Keys   []string `yaml:"keys"`
	// SigningSecret, when set, makes request signatures (Standard Webhooks)
	// mandatory for this partner. A "whsec_" prefix is stripped and the rest
	// base64-decoded if it decodes; otherwise the raw bytes are the key.
	SigningSecret string    `yaml:"signing_secret"`
	RateLimit     RateLimit `yaml:"rate_limit"`

	limiter *rate.Limiter
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

// Limiter returns the partner's token bucket.
func (p *Partner) Limiter() *rate.Limiter { return p.limiter }

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Registry finds partners by key and by name. It is read-only after New and
// safe for concurrent use.
type Registry struct {
	byKey  map[[32]byte]*Partner
	byName map[string]*Partner
}

// New validates the partners and builds the registry.
func New(ps []Partner) (*Registry, error) {
	r := &Registry{byKey: map[[32]byte]*Partner{}, byName: map[string]*Partner{}}
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
		if len(p.Keys) == 0 {
			return nil, fmt.Errorf("partners: partner %q has no keys", p.Name)
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
		for _, k := range p.Keys {
			if len(k) < 8 {
				return nil, fmt.Errorf("partners: partner %q: a key must have at least 8 characters", p.Name)
			}
			h := sha256.Sum256([]byte(k))
			if other, dup := r.byKey[h]; dup {
				return nil, fmt.Errorf("partners: partners %q and %q share a key", other.Name, p.Name)
			}
			r.byKey[h] = pp
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
	return p, ok
}

// Errors of Authenticate. Their text is the message the HTTP APIs answer
// 401 with.
var (
	ErrMissingCredential = errors.New("missing credential: send Authorization: Bearer <partner key>")
	ErrUnknownKey        = errors.New("unknown partner key")
)

// Authenticate returns the partner whose bearer key an Authorization header
// value ("Bearer <key>") carries. It returns ErrMissingCredential when the
// value is not "Bearer " and a key, and ErrUnknownKey when the key, without
// surrounding white space, is no partner's (looked up as ByKey does).
func (r *Registry) Authenticate(authorization string) (*Partner, error) {
	key, found := strings.CutPrefix(authorization, "Bearer ")
	if !found || key == "" {
		return nil, ErrMissingCredential
	}
	p, found := r.ByKey(strings.TrimSpace(key))
	if !found {
		return nil, ErrUnknownKey
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
