// Package requestid makes the ids that every HTTP answer of Rolodex
// carries in X-Request-Id and, for an error, in the body's request_id.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
)

// Header is the response header that carries a request's id.
const Header = "X-Request-Id"

// New returns a random request id: 24 hex digits.
func New() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
