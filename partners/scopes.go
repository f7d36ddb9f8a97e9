package partners

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Scope is what a key may do. Every HTTP endpoint requires one
// (docs/api.md, "Scopes").
type Scope string

// Scopes.
const (
	// ScopeEventsWrite sends events: POST /v1/events, POST /v1/webhooks/{mapping}.
	ScopeEventsWrite Scope = "events:write"
	// ScopeProfilesRead reads profiles: GET /v1/profiles/{id}, GET /v1/lookup,
	// GET /v1/blacklist.
	ScopeProfilesRead Scope = "profiles:read"
	// ScopeProfilesWrite changes what a person sets on a profile: tags,
	// the blacklist, consent.
	ScopeProfilesWrite Scope = "profiles:write"
	// ScopeAdmin manages rules, routing and topics (later issues).
	ScopeAdmin Scope = "admin"
	// ScopeTopicsWrite creates the partner's fan-out topics and changes
	// their access lists (docs/fanout.md; admin may too). Subscribing
	// needs no scope: the topic's access list decides.
	ScopeTopicsWrite Scope = "topics:write"
)

// AllScopes lists every scope.
var AllScopes = []Scope{ScopeEventsWrite, ScopeProfilesRead, ScopeProfilesWrite, ScopeAdmin, ScopeTopicsWrite}

// DefaultScopes are the scopes of a key written as a plain string: what
// every key could do before keys had scopes.
var DefaultScopes = []Scope{ScopeEventsWrite, ScopeProfilesRead}

func validScopes() string {
	s := make([]string, len(AllScopes))
	for i, sc := range AllScopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ", ")
}

// Key is a bearer key and its scopes.
type Key struct {
	Key    string  `yaml:"key"`
	Scopes []Scope `yaml:"scopes"`
}

// KeyList is a partner's `keys:` in the configuration file. Each entry is
// either a plain string, a key with DefaultScopes (so configurations
// written before scopes load unchanged), or {key: ..., scopes: [...]}.
type KeyList []Key

// UnmarshalYAML reads both forms of a key.
func (l *KeyList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: keys must be a list of keys (strings, or {key: ..., scopes: [...]})", n.Line)
	}
	out := make(KeyList, 0, len(n.Content))
	for i, item := range n.Content {
		switch item.Kind {
		case yaml.ScalarNode:
			out = append(out, Key{Key: item.Value, Scopes: slices.Clone(DefaultScopes)})
		case yaml.MappingNode:
			var k Key
			for j := 0; j+1 < len(item.Content); j += 2 {
				switch name := item.Content[j].Value; name {
				case "key":
					if err := item.Content[j+1].Decode(&k.Key); err != nil {
						return fmt.Errorf("line %d: keys[%d].key: %w", item.Content[j+1].Line, i, err)
					}
				case "scopes":
					if err := item.Content[j+1].Decode(&k.Scopes); err != nil {
						return fmt.Errorf("line %d: keys[%d].scopes must be a list of scopes (%s): %w", item.Content[j+1].Line, i, validScopes(), err)
					}
				default:
					return fmt.Errorf("line %d: keys[%d]: unknown field %q (a key has key and scopes)", item.Content[j].Line, i, name)
				}
			}
			if len(k.Scopes) == 0 {
				return fmt.Errorf("line %d: keys[%d] has no scopes: list them (%s), or write the key as a plain string for %s and %s",
					item.Line, i, validScopes(), ScopeEventsWrite, ScopeProfilesRead)
			}
			out = append(out, k)
		default:
			return fmt.Errorf("line %d: keys[%d] must be a string or {key: ..., scopes: [...]}", item.Line, i)
		}
	}
	*l = out
	return nil
}

// checkScopes reports an unknown scope, naming the valid ones.
func checkScopes(scopes []Scope) error {
	for _, s := range scopes {
		if !slices.Contains(AllScopes, s) {
			return fmt.Errorf("unknown scope %q (valid: %s)", s, validScopes())
		}
	}
	return nil
}

// Principal is who a bearer key authenticates: the partner and the
// scopes of that key (two keys of one partner may differ).
type Principal struct {
	Partner *Partner
	Scopes  []Scope
}

// Has reports whether the key has scope s.
func (p Principal) Has(s Scope) bool { return slices.Contains(p.Scopes, s) }

// Require returns a *ScopeError when the key lacks scope s.
func (p Principal) Require(s Scope) error {
	if p.Has(s) {
		return nil
	}
	return &ScopeError{Scope: s}
}

// ScopeError says a key lacks a scope. Its text is the message the HTTP
// APIs answer 403 forbidden with.
type ScopeError struct {
	Scope Scope
}

func (e *ScopeError) Error() string { return "this key lacks the scope " + string(e.Scope) }

// ErrForbidden matches every *ScopeError (errors.Is).
var ErrForbidden = errors.New("forbidden")

// Is makes errors.Is(err, ErrForbidden) true for a ScopeError.
func (e *ScopeError) Is(target error) bool { return target == ErrForbidden }
