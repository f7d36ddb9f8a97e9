package normalize

import "fmt"

// Error is the error returned by Normalizer.Identifier and Normalizer.Type.
type Error struct {
	// Type is the identifier type: normalised for value errors, as given
	// for ReasonUnknownIdentifierType.
	Type string
	// Value is the value as given (untrimmed). Empty for Type errors.
	Value string
	// Reason is a short machine-readable code: one of the Reason* consts.
	Reason string
	// Message is a human sentence naming the type and the value.
	Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("%s value %q rejected: %s", e.Type, clip(e.Value), e.Reason)
}

func newError(typ, value, reason, msg string) *Error {
	return &Error{Type: typ, Value: value, Reason: reason, Message: msg}
}

func blockedError(typ, raw, v string) *Error {
	return newError(typ, raw, ReasonBlocked,
		fmt.Sprintf("%s value %q is blocked: %q is a known placeholder or junk value", typ, clip(raw), clip(v)))
}
