package stdwebhooks

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Verify against the reference library's vector and its failure cases
// (github.com/standard-webhooks/standard-webhooks, libraries/go
// webhook_test.go): a wrong or missing signature, a stale or future
// timestamp, several signatures of which one matches, other versions.
func TestVerify(t *testing.T) {
	key, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	const id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330"
	body := []byte(`{"test": 2432232314}`)
	now := time.Unix(1614265330, 0)
	good := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	header := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{HeaderID: id, HeaderTimestamp: ts, HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	for _, c := range []struct {
		name    string
		h       http.Header
		body    []byte
		now     time.Time
		wantErr error
		says    string
	}{
		{"good", header(id, ts, good), body, now, nil, ""},
		{"good among others", header(id, ts, "v1a,abc v1,Zm9v "+good+" v2,xyz"), body, now, nil, ""},
		{"4:59 old", header(id, ts, good), body, now.Add(DefaultTolerance - time.Second), nil, ""},
		{"body changed", header(id, ts, good), []byte(`{"test": 2432232315}`), now, ErrNoMatch, "none of the 1 v1 signatures"},
		{"other id", header(id+"x", ts, good), body, now, ErrNoMatch, "another secret"},
		{"no v1", header(id, ts, "v2,"+strings.TrimPrefix(good, "v1,")), body, now, ErrNoMatch, "no v1 entry"},
		{"no headers", header("", "", ""), body, now, ErrMissingHeaders, "webhook-id, webhook-timestamp, webhook-signature"},
		{"no signature", header(id, ts, ""), body, now, ErrMissingHeaders, "webhook-signature"},
		{"timestamp text", header(id, "yesterday", good), body, now, ErrBadTimestamp, "not Unix seconds"},
		{"too old", header(id, ts, good), body, now.Add(DefaultTolerance + time.Second), ErrBadTimestamp, "5m1s old"},
		{"in the future", header(id, ts, good), body, now.Add(-DefaultTolerance - time.Second), ErrBadTimestamp, "in the future"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(key, c.h, c.body, c.now, DefaultTolerance)
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, c.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Verify = %q, want it to say %q", err, c.says)
			}
		})
	}
}
