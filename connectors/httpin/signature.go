package httpin

import (
	"errors"
	"fmt"
	"net/http"
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

// verifySignature checks the Standard Webhooks signature of a request body
// (stdwebhooks.Verify: the headers, the timestamp within tolerance of now,
// one v1 signature matching in constant time). A request without the
// headers is told that this partner must sign.
func verifySignature(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	err := stdwebhooks.Verify(key, h, body, now, tolerance)
	if errors.Is(err, stdwebhooks.ErrMissingHeaders) {
		return fmt.Errorf("this partner must sign requests: webhook-id, webhook-timestamp and webhook-signature headers are required (%w)", err)
	}
	return err
}
