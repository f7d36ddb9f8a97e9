package stdwebhooks

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far from the receiver's clock a webhook-timestamp
// may be, either way, as in the Standard Webhooks reference libraries: an
// older request is a replay, a newer one a wrong clock.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify, for errors.Is; each returned error says more.
var (
	ErrMissingHeaders = errors.New("missing headers")
	ErrBadTimestamp   = errors.New("bad timestamp")
	ErrNoMatch        = errors.New("no matching signature")
)

// Verify checks a received request the way the specification tells a
// receiver to: the three headers are present, webhook-timestamp (Unix
// seconds) is within tolerance of now either way, and one of the
// space-separated "v1,<signature>" entries of webhook-signature is the
// Signature of id, timestamp and body with key (compared in constant time;
// other versions are ignored). The error says which check failed.
func Verify(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	var missing []string
	for _, p := range [][2]string{{HeaderID, id}, {HeaderTimestamp, ts}, {HeaderSignature, sigs}} {
		if p[1] == "" {
			missing = append(missing, p[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q is not Unix seconds", ErrBadTimestamp, ts)
	}
	switch d := now.Sub(time.Unix(sec, 0)); {
	case d > tolerance:
		return fmt.Errorf("%w: webhook-timestamp %s is %s old, more than the %s tolerance (a replayed request, or a clock behind)",
			ErrBadTimestamp, ts, d.Truncate(time.Second), tolerance)
	case d < -tolerance:
		return fmt.Errorf("%w: webhook-timestamp %s is %s in the future, more than the %s tolerance (a clock ahead)",
			ErrBadTimestamp, ts, (-d).Truncate(time.Second), tolerance)
	}
	// Compare the base64 text, as the reference library does: a signature
	// whose unused low bits differ decodes to the same bytes but is not the
	// one the sender computed.
	want := []byte(Signature(key, id, ts, body))
	versions := 0
	for _, s := range strings.Fields(sigs) {
		v, got, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		versions++
		if hmac.Equal([]byte(got), want) {
			return nil
		}
	}
	if versions == 0 {
		return fmt.Errorf("%w: webhook-signature has no v1 entry (%q)", ErrNoMatch, sigs)
	}
	return fmt.Errorf("%w: none of the %d v1 signatures is HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\" with this secret (another secret, or a body changed on the way)", ErrNoMatch, versions)
}
