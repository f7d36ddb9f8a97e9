package httpin

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/partners"
)

// The Standard Webhooks reference test suite, ported: the constants and the
// cases of TestWebhook, TestWebhookPrefix, TestWebhookSign and the empty
// secret tests of libraries/go/webhook_test.go in
// github.com/standard-webhooks/standard-webhooks at commit
// b2fa7b8719fb75d326b591077f5d1b385cfcdfae (the file last changed in
// 59104160f10908d80ee571a81460e1c9c0c05355), plus the invalid timestamp and
// near-miss signature of libraries/python/tests/test_webhooks.py at the same
// commit. The reference signs and verifies at time.Now(); here "now" is the
// signing vector's timestamp, so every case is deterministic.
const (
	refSecret    = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	refMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	refPayload   = `{"test": 2432232314}`
	refTimestamp = 1614265330
	// refSignature is TestWebhookSign's expected signature of refPayload
	// with refSecret, refMsgID and refTimestamp.
	refSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// refWrongSignature is the "invalid signature" of TestWebhook.
	refWrongSignature = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	refTolerance      = 5 * time.Minute
)

// noTolerance stands for the reference's VerifyIgnoringTimestamp.
const noTolerance = time.Duration(math.MaxInt64)

func TestSignReferenceVector(t *testing.T) {
	for _, secret := range []string{"whsec_" + refSecret, refSecret} {
		key, err := partners.ParseSigningSecret(secret)
		if err != nil {
			t.Fatalf("%s: %v", secret, err)
		}
		if got := Sign(key, refMsgID, time.Unix(refTimestamp, 0), []byte(refPayload)); got != refSignature {
			t.Errorf("secret %s: signature %s, want %s", secret, got, refSignature)
		}
	}
	// The non-canonical signature of TestVerifyReferenceVectors decodes to
	// the same bytes as the right one.
	a, errA := base64.StdEncoding.DecodeString("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	b, errB := base64.StdEncoding.DecodeString("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=")
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("non-canonical base64: %x %v, %x %v", a, errA, b, errB)
	}
	for _, secret := range []string{"", "whsec_"} {
		if _, err := partners.ParseSigningSecret(secret); err == nil {
			t.Errorf("empty secret %q accepted", secret)
		}
	}
}

func TestVerifyReferenceVectors(t *testing.T) {
	now := time.Unix(refTimestamp, 0)
	// signed returns the reference headers of refPayload signed at ts.
	signed := func(key []byte, ts time.Time) http.Header {
		h := http.Header{}
		h.Set(HeaderWebhookID, refMsgID)
		h.Set(HeaderWebhookTimestamp, fmt.Sprint(ts.Unix()))
		h.Set(HeaderWebhookSignature, Sign(key, refMsgID, ts, []byte(refPayload)))
		return h
	}
	tests := []struct {
		name      string
		ts        time.Time // signing time; the zero time means now
		edit      func(h http.Header)
		body      string        // the body received; empty means refPayload
		tolerance time.Duration // zero means refTolerance
		ok        bool
	}{
		{name: "valid signature is valid", ok: true},
		{name: "the signing vector itself", edit: func(h http.Header) { h.Set(HeaderWebhookSignature, refSignature) }, ok: true},
		{name: "missing id returns error", edit: func(h http.Header) { h.Del(HeaderWebhookID) }},
		{name: "missing timestamp returns error", edit: func(h http.Header) { h.Del(HeaderWebhookTimestamp) }},
		{name: "missing signature returns error", edit: func(h http.Header) { h.Del(HeaderWebhookSignature) }},
		{name: "invalid signature is invalid", edit: func(h http.Header) { h.Set(HeaderWebhookSignature, refWrongSignature) }},
		{name: "partial signature is invalid", edit: func(h http.Header) { h.Set(HeaderWebhookSignature, "v1,") }},
		// The reference signs at time.Now().Add(-tolerance) and relies on
		// the time that passes before Verify; a second past it is explicit.
		{name: "old timestamp fails", ts: now.Add(-refTolerance - time.Second)},
		{name: "new timestamp fails", ts: now.Add(refTolerance + time.Second)},
		{name: "valid multi sig is valid", edit: func(h http.Header) {
			h.Set(HeaderWebhookSignature, strings.Join([]string{
				refWrongSignature,
				"v2," + strings.TrimPrefix(refWrongSignature, "v1,"),
				h.Get(HeaderWebhookSignature),
				refWrongSignature,
			}, " "))
		}, ok: true},
		{name: "old timestamp passes when ignoring tolerance", ts: now.Add(-refTolerance - time.Second), tolerance: noTolerance, ok: true},
		{name: "new timestamp passes when ignoring tolerance", ts: now.Add(refTolerance), tolerance: noTolerance, ok: true},
		{name: "valid timestamp passes when ignoring tolerance", tolerance: noTolerance, ok: true},
		{name: "invalid timestamp fails when ignoring tolerance", edit: func(h http.Header) {
			h.Set(HeaderWebhookTimestamp, fmt.Sprint(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()))
		}, tolerance: noTolerance},
		// From the Python suite.
		{name: "non-numeric timestamp", edit: func(h http.Header) { h.Set(HeaderWebhookTimestamp, "hello") }},
		{name: "signature off by one base64 digit", edit: func(h http.Header) {
			h.Set(HeaderWebhookSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
		}},
		// Ours: the reference compares the base64 text, so a last digit
		// that differs only in the unused low bits (E -> F) is no match,
		// although it decodes to the same bytes.
		{name: "signature with non-canonical base64", edit: func(h http.Header) {
			h.Set(HeaderWebhookSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=")
		}},
		{name: "exactly at the tolerance", ts: now.Add(-refTolerance), ok: true},
		{name: "signature over another body", body: refPayload + " "},
	}
	for _, secret := range []string{refSecret, "whsec_" + refSecret} {
		key, err := partners.ParseSigningSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(secret+"/"+tt.name, func(t *testing.T) {
				ts, tol := tt.ts, tt.tolerance
				if ts.IsZero() {
					ts = now
				}
				if tol == 0 {
					tol = refTolerance
				}
				h := signed(key, ts)
				if tt.edit != nil {
					tt.edit(h)
				}
				body := tt.body
				if body == "" {
					body = refPayload
				}
				err := verifySignature(key, h, []byte(body), now, tol)
				if tt.ok && err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if !tt.ok && err == nil {
					t.Fatal("accepted")
				}
			})
		}
	}
}

// TestMailgunUsedTokens: a token is refused while its signature could
// still pass the timestamp check, free again after, and expired tokens
// are swept so the memory holds about one tolerance window of tokens.
func TestMailgunUsedTokens(t *testing.T) {
	var u usedTokens
	t0 := time.Unix(1764151200, 0)
	if err := u.claim("tok-1", t0.Add(5*time.Minute), t0); err != nil {
		t.Fatal(err)
	}
	if err := u.claim("tok-1", t0.Add(5*time.Minute), t0.Add(4*time.Minute)); err == nil {
		t.Fatal("a used token within the window was accepted")
	}
	if err := u.claim("tok-2", t0.Add(5*time.Minute), t0); err != nil {
		t.Fatalf("another token refused: %v", err)
	}
	later := t0.Add(6 * time.Minute)
	if err := u.claim("tok-1", later.Add(5*time.Minute), later); err != nil {
		t.Fatalf("a token past its window refused: %v", err)
	}
	for i := 0; i < 3000; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		if err := u.claim(fmt.Sprintf("bulk-%d", i), at.Add(5*time.Minute), at); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(u.until); n > 2*1024+600 {
		t.Fatalf("%d tokens held; expired ones are not swept", n)
	}
}
