package httpin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signature schemes of providers' webhooks (Mapping.Signature).
const (
	// SchemeSendGrid is SendGrid's Signed Event Webhook: an ECDSA (P-256,
	// SHA-256) signature of the timestamp header's text followed by the
	// body, base64 ASN.1 in X-Twilio-Email-Event-Webhook-Signature; the key
	// is the verification key SendGrid shows, base64 DER (PKIX).
	SchemeSendGrid = "sendgrid"
	// SchemeMailgun is Mailgun's webhook signature: the body's
	// signature.signature is the hex HMAC-SHA256 of signature.timestamp
	// followed by signature.token, keyed with the HTTP webhook signing key.
	SchemeMailgun = "mailgun"
)

// SendGrid's signature headers.
const (
	HeaderSendGridSignature = "X-Twilio-Email-Event-Webhook-Signature"
	HeaderSendGridTimestamp = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// Signature configures the verification of a provider's own signature.
type Signature struct {
	// Scheme is "sendgrid" or "mailgun".
	Scheme string `yaml:"scheme"`
	// Key is SendGrid's verification key (base64 DER public key) or
	// Mailgun's HTTP webhook signing key.
	Key string `yaml:"key"`
}

// verifier checks a request's signature; tolerance bounds a signed
// timestamp's distance from now where the scheme has one to check.
type verifier func(h http.Header, body []byte, now time.Time, tolerance time.Duration) error

func (s *Signature) compile() (verifier, error) {
	if strings.TrimSpace(s.Key) == "" {
		return nil, fmt.Errorf("scheme %q needs a key", s.Scheme)
	}
	switch s.Scheme {
	case SchemeSendGrid:
		pub, err := parseSendGridKey(s.Key)
		if err != nil {
			return nil, err
		}
		return func(h http.Header, body []byte, _ time.Time, _ time.Duration) error {
			return verifySendGrid(pub, h, body)
		}, nil
	case SchemeMailgun:
		key := []byte(s.Key)
		used := &usedTokens{}
		return func(_ http.Header, body []byte, now time.Time, tolerance time.Duration) error {
			token, ts, err := verifyMailgun(key, body, now, tolerance)
			if err != nil {
				return err
			}
			return used.claim(token, ts.Add(tolerance), now)
		}, nil
	}
	return nil, fmt.Errorf("scheme %q is not sendgrid or mailgun", s.Scheme)
}

func parseSendGridKey(k string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	if err != nil {
		return nil, fmt.Errorf("the sendgrid key is not base64: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("the sendgrid key is not a DER public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("the sendgrid key is not an ECDSA public key")
	}
	return ec, nil
}

// verifySendGrid checks SendGrid's Signed Event Webhook signature. The
// timestamp is signed but not checked against the clock: SendGrid retries
// a failed POST for up to 72 hours, and a replayed body carries events
// whose ids the identity stage deduplicates.
func verifySendGrid(pub *ecdsa.PublicKey, h http.Header, body []byte) error {
	sig, ts := h.Get(HeaderSendGridSignature), h.Get(HeaderSendGridTimestamp)
	if sig == "" || ts == "" {
		return fmt.Errorf("this mapping verifies SendGrid's signature: the %s and %s headers are required", HeaderSendGridSignature, HeaderSendGridTimestamp)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%s is not base64", HeaderSendGridSignature)
	}
	d := sha256.New()
	d.Write([]byte(ts))
	d.Write(body)
	if !ecdsa.VerifyASN1(pub, d.Sum(nil), der) {
		return errors.New("the SendGrid signature does not match the timestamp and body for the configured verification key")
	}
	return nil
}

// usedTokens remembers the Mailgun tokens whose signature verified, each
// until its signed timestamp leaves the tolerance (after which the
// timestamp check refuses it anyway): a signature block is good for one
// request. In memory, per process: with several rolodex processes behind a
// load balancer a block can still be replayed once to each other process.
type usedTokens struct {
	mu        sync.Mutex
	until     map[string]time.Time
	nextSweep int
}

// claim records token as used until expiry, or refuses it if a request
// already used it.
func (u *usedTokens) claim(token string, expiry, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.until == nil {
		u.until = map[string]time.Time{}
	}
	if exp, seen := u.until[token]; seen && !now.After(exp) {
		return errors.New("this Mailgun signature token was already used (a signature block is good for one request)")
	}
	if len(u.until) >= u.nextSweep {
		for t, exp := range u.until {
			if now.After(exp) {
				delete(u.until, t)
			}
		}
		u.nextSweep = max(2*len(u.until), 1024)
	}
	u.until[token] = expiry
	return nil
}

// verifyMailgun checks the signature block of a Mailgun webhook body and
// returns its token and timestamp. It signs a timestamp and a random
// token, not the event: the timestamp must be within tolerance of now, so
// an old block cannot vouch for another body for long (and the caller
// refuses a token used before).
func verifyMailgun(key, body []byte, now time.Time, tolerance time.Duration) (string, time.Time, error) {
	var doc struct {
		Signature *struct {
			Timestamp json.RawMessage `json:"timestamp"`
			Token     string          `json:"token"`
			Signature string          `json:"signature"`
		} `json:"signature"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &doc) != nil || doc.Signature == nil {
		return "", time.Time{}, errors.New("this mapping verifies Mailgun's signature: the body must be a JSON object with a signature object (timestamp, token, signature)")
	}
	ts := strings.Trim(string(doc.Signature.Timestamp), `"`)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || doc.Signature.Token == "" || doc.Signature.Signature == "" {
		return "", time.Time{}, errors.New("the Mailgun signature needs signature.timestamp (Unix seconds), signature.token and signature.signature")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return "", time.Time{}, fmt.Errorf("signature.timestamp is outside the %s tolerance", tolerance)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(ts))
	mac.Write([]byte(doc.Signature.Token))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(strings.ToLower(doc.Signature.Signature)), []byte(want)) {
		return "", time.Time{}, errors.New("the Mailgun signature does not match signature.timestamp and signature.token for the configured signing key")
	}
	return doc.Signature.Token, time.Unix(sec, 0), nil
}
