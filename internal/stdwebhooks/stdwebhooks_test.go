package stdwebhooks

import (
	"encoding/base64"
	"testing"
	"time"
)

// The signing vector of the Standard Webhooks reference library's tests
// (github.com/standard-webhooks/standard-webhooks, libraries/go
// webhook_test.go, TestWebhookSign; also connectors/httpin's
// signature_test.go, which ports the whole suite).
func TestSignReferenceVector(t *testing.T) {
	key, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if ts := Timestamp(time.Unix(1614265330, 999e6)); ts != "1614265330" {
		t.Fatalf("Timestamp = %s", ts)
	}
}
