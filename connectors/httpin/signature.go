package httpin

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/internal/stdwebhooks"
)

// Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = stdwebhooks.HeaderID
	HeaderWebhookTimestamp = stdwebhooks.HeaderTimestamp
	HeaderWebhookSignature = stdwebhooks.HeaderSignature
)

// Sign returns the webhook-signature header value for a message. key is
// the partner's signing key (partners.ParseSigningSecret).
// The computation is internal/stdwebhooks', shared with the outbound
// webhooks (connectors/webhooks).
func Sign(key []byte, msgID string, ts time.Time, body []byte) string {
	return stdwebhooks.Sign(key, msgID, ts, body)
}

// verifySignature checks the Standard Webhooks signature of a request body:
// the timestamp must be within tolerance of now and one of the v1 signatures
// must match (compared in constant time).
func verifySignature(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp), h.Get(HeaderWebhookSignature)
	if id == "" || ts == "" || sigs == "" {
		return errors.New("this partner must sign requests: webhook-id, webhook-timestamp and webhook-signature headers are required")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp must be Unix seconds")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp is outside the %s tolerance; check the clock and sign each request when sending it", tolerance)
	}
	// Like the reference library, compare the base64 text: a signature whose
	// unused low bits differ decodes to the same bytes but is not the one
	// the sender computed.
	want := []byte(stdwebhooks.Signature(key, id, ts, body))
	for _, s := range strings.Fields(sigs) {
		v, got, ok := strings.Cut(s, ",")
		if ok && v == "v1" && hmac.Equal([]byte(got), want) {
			return nil
		}
	}
	return errors.New("no webhook-signature matches the body; sign \"{webhook-id}.{webhook-timestamp}.{body}\" with HMAC-SHA256")
}
