// Package stdwebhooks is the signature of Standard Webhooks
// (https://www.standardwebhooks.com): the one HMAC computation that the
// ingest connector verifies (connectors/httpin) and the outbound webhooks
// sign with (connectors/webhooks), and Verify, a receiver's whole check
// (rolodex webhooks listen).
package stdwebhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"
)

// The headers of a signed request.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Signature is the base64 (standard alphabet, padded) HMAC-SHA256, with
// key, of "{id}.{timestamp}.{body}"; timestamp is Unix seconds as decimal
// text, exactly as the webhook-timestamp header carries it.
func Signature(key []byte, id, timestamp string, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Timestamp is the webhook-timestamp header value of ts.
func Timestamp(ts time.Time) string { return strconv.FormatInt(ts.Unix(), 10) }

// Sign returns the webhook-signature header value ("v1,<signature>") of a
// message sent at ts.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + Signature(key, id, Timestamp(ts), body)
}
