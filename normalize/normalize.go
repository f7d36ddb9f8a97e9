// Package normalize validates and normalises customer identifiers (emails,
// phone numbers, user ids, ...) before they reach the profile store.
//
// A Normalizer is built once from a Config and is safe for concurrent use:
// besides read-only state (the blocklist map and the default region) it
// holds a bounded, locked memo of phone results.
// Identifier is on the hot path (it runs for every identifier of every
// event): it compiles nothing per call, and opaque ids (user_id, ...) cost no
// allocation. Emails cost about 1µs (net/mail.ParseAddress). A phone costs
// about 0.1µs when the same value was seen recently (the memo), a few µs
// when it is written plainly (digits, spaces, "()-." and a leading "+":
// see phonefast.go), and 20-40µs otherwise (phonenumbers.Parse, regex-heavy).
package normalize

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/rolodex/rolodex/schemas"
)

// Reasons carried by Error.Reason.
const (
	ReasonEmpty                 = "empty"
	ReasonBlocked               = "blocked"
	ReasonInvalidEmail          = "invalid_email"
	ReasonInvalidPhone          = "invalid_phone"
	ReasonUnknownIdentifierType = "unknown_identifier_type"
	ReasonTooLong               = "too_long"
)

const (
	// MaxValueLen is the longest identifier value accepted, in bytes, after
	// trimming.
	MaxValueLen = 256
	// DefaultPhoneRegion is the region used for phone numbers without a
	// country code when Config.DefaultRegion is empty.
	DefaultPhoneRegion = "BR"

	maxEmailLocalLen  = 64
	maxEmailDomainLen = 253
	maxDomainLabelLen = 63
	maxExternalName   = 64

	// A phone whose digits are all one digit repeated at least this many
	// times is a placeholder ("0000000000", "(11) 99999-9999").
	minRepeatedDigits = 6
	// A phone whose digits are one ascending run ("12345678", "1234567890")
	// at least this long is a placeholder.
	minAscendingRun = 8

	// DefaultPhoneCacheSize is the default of Config.PhoneCacheSize.
	DefaultPhoneCacheSize = 1 << 16
)

// defaultBlocked is the built-in blocklist: junk values that systems emit
// when they have no real identifier. Values that are all zeros are blocked
// too (see isAllZeros); they are not listed here.
var defaultBlocked = []string{
	"null", "nil", "undefined", "none", "n/a", "na", "0", "-1",
	"anonymous", "unknown", "[object object]", "test",
	"test@test.com", "test@example.com", "example@example.com",
	"email@email.com", "noemail@noemail.com", "no@email.com", "asdf@asdf.com",
}

// DefaultBlocked returns a copy of the built-in blocklist. Besides these
// values, the built-in list blocks every value made only of zeros ("000").
func DefaultBlocked() []string {
	out := make([]string, len(defaultBlocked))
	copy(out, defaultBlocked)
	return out
}

// Config configures a Normalizer. The zero value is usable: New fills in the
// defaults.
type Config struct {
	// DefaultRegion is the ISO 3166-1 alpha-2 region used to parse phone
	// numbers written without a country code. Default "BR". Case-insensitive.
	DefaultRegion string
	// Blocked lists extra junk values, added to the built-in list (unless
	// NoDefaultBlocklist). They are compared case-insensitively with the
	// trimmed value and with its normalised form, so phones should be given
	// in E.164 ("+5511999999999"); an entry starting with "+" that is a
	// valid phone number is also stored in E.164 form. Empty entries are
	// ignored.
	Blocked []string
	// NoDefaultBlocklist drops the built-in list (DefaultBlocked and the
	// all-zeros rule). Placeholder phone numbers (one repeated digit, one
	// ascending run) are rejected regardless: they are part of phone
	// validation, not of the blocklist.
	NoDefaultBlocklist bool
	// PhoneCacheSize bounds the memo of phone and WhatsApp results (by type
	// and value as given) that spares re-parsing values seen recently.
	// Default DefaultPhoneCacheSize entries (about 13 MB when full); a
	// negative value turns the memo off.
	PhoneCacheSize int
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	c.DefaultRegion = strings.ToUpper(strings.TrimSpace(c.DefaultRegion))
	if c.DefaultRegion == "" {
		c.DefaultRegion = DefaultPhoneRegion
	}
	if c.PhoneCacheSize == 0 {
		c.PhoneCacheSize = DefaultPhoneCacheSize
	}
}

// Validate reports whether the configuration is usable. An empty
// DefaultRegion is valid (it defaults to DefaultPhoneRegion).
func (c *Config) Validate() error {
	region := strings.ToUpper(strings.TrimSpace(c.DefaultRegion))
	if region == "" {
		region = DefaultPhoneRegion
	}
	if !phonenumbers.GetSupportedRegions()[region] {
		return fmt.Errorf("normalize: config: DefaultRegion %q is not a supported ISO 3166-1 alpha-2 region", c.DefaultRegion)
	}
	for i, b := range c.Blocked {
		if len(trim(b)) > MaxValueLen {
			return fmt.Errorf("normalize: config: Blocked[%d] is longer than %d bytes", i, MaxValueLen)
		}
	}
	return nil
}

// Normalizer validates and normalises identifiers. It is safe for
// concurrent use.
type Normalizer struct {
	region string
	// blocked holds lowercased, trimmed blocked values.
	blocked map[string]struct{}
	// maxBlockedLen is the length of the longest blocked value: longer
	// values skip the lookup (and the lowercasing it needs).
	maxBlockedLen int
	blockZeros    bool
	// phones parses plainly written phone numbers without
	// phonenumbers.Parse; nil when the region does not allow it.
	phones *phoneParser
	// cache remembers phone results; nil when turned off.
	cache *phoneCache
	// valid is phonenumbers.IsValidNumber (isValidNumber, its faster
	// equivalent).
	valid func(*phonenumbers.PhoneNumber) bool
}

// New builds a Normalizer. It returns an error if cfg is invalid, e.g. an
// unknown DefaultRegion.
func New(cfg Config) (*Normalizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	n := &Normalizer{
		region:     cfg.DefaultRegion,
		blocked:    make(map[string]struct{}, len(defaultBlocked)+2*len(cfg.Blocked)),
		blockZeros: !cfg.NoDefaultBlocklist,
		phones:     newPhoneParser(cfg.DefaultRegion),
		cache:      newPhoneCache(cfg.PhoneCacheSize),
		valid:      isValidNumber,
	}
	if !cfg.NoDefaultBlocklist {
		for _, b := range defaultBlocked {
			n.addBlocked(b)
		}
	}
	for _, b := range cfg.Blocked {
		b = trim(b)
		if b == "" {
			continue
		}
		n.addBlocked(b)
		if strings.HasPrefix(b, "+") {
			if num, err := n.parsePhone(b); err == nil && n.valid(num) {
				n.addBlocked(phonenumbers.Format(num, phonenumbers.E164))
			}
		}
	}
	return n, nil
}

func (n *Normalizer) addBlocked(v string) {
	v = strings.ToLower(v)
	n.blocked[v] = struct{}{}
	if len(v) > n.maxBlockedLen {
		n.maxBlockedLen = len(v)
	}
}

// Region returns the default phone region in use.
func (n *Normalizer) Region() string { return n.region }

// isBlocked reports whether v (already trimmed) is blocked.
func (n *Normalizer) isBlocked(v string) bool {
	if n.blockZeros && isAllZeros(v) {
		return true
	}
	// Lowercasing can shrink non-ASCII text (U+212A KELVIN SIGN, 3 bytes,
	// becomes "k"), hence the 3x bound for non-ASCII values.
	if len(v) > n.maxBlockedLen && (len(v) > 3*n.maxBlockedLen || isASCII(v)) {
		return false
	}
	// strings.ToLower returns v itself (no allocation) for lowercase ASCII.
	_, ok := n.blocked[strings.ToLower(v)]
	return ok
}

// Type validates and normalises an identifier type name: it trims and
// lowercases it and accepts the known types and "external:<name>" where
// name matches [a-z0-9][a-z0-9_.-]{0,63}. Otherwise it returns an *Error
// with Reason ReasonUnknownIdentifierType.
func (n *Normalizer) Type(typ string) (string, error) {
	t := strings.ToLower(trim(typ))
	switch t {
	case schemas.IDEmail, schemas.IDPhone, schemas.IDUserID,
		schemas.IDAnonymousID, schemas.IDWhatsApp, schemas.IDFacebook:
		return t, nil
	}
	if name, ok := strings.CutPrefix(t, schemas.IDExternal); ok && validExternalName(name) {
		return t, nil
	}
	return "", &Error{
		Type:   typ,
		Reason: ReasonUnknownIdentifierType,
		Message: fmt.Sprintf("unknown identifier type %q: want one of email, phone, user_id, anonymous_id, whatsapp, facebook or external:<name> with name matching [a-z0-9][a-z0-9_.-]{0,63}",
			clip(typ)),
	}
}

func validExternalName(name string) bool {
	if len(name) == 0 || len(name) > maxExternalName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Identifier normalises one value of one identifier type (the type is
// normalised with Type first). On failure the error is an *Error.
//
//   - every value is trimmed of Unicode whitespace (and zero-width spaces /
//     BOMs); empty, longer than MaxValueLen, and blocked values are
//     rejected;
//   - email: lowercased and syntax-checked;
//   - phone, whatsapp: parsed with the default region and formatted as
//     E.164; placeholder numbers are blocked;
//   - user_id, anonymous_id, facebook, external:*: trimmed, case preserved.
func (n *Normalizer) Identifier(typ, value string) (string, error) {
	t, err := n.Type(typ)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Value = value
		}
		return "", err
	}
	v := trim(value)
	if v == "" {
		return "", newError(t, value, ReasonEmpty, fmt.Sprintf("%s value is empty", t))
	}
	if len(v) > MaxValueLen {
		return "", newError(t, value, ReasonTooLong,
			fmt.Sprintf("%s value %q is too long: %d bytes, max %d", t, clip(v), len(v), MaxValueLen))
	}
	switch t {
	case schemas.IDEmail:
		return n.email(t, value, v)
	case schemas.IDPhone, schemas.IDWhatsApp:
		if n.isBlocked(v) {
			return "", blockedError(t, value, v)
		}
		return n.cachedPhone(t, value, v)
	default:
		if n.isBlocked(v) {
			return "", blockedError(t, value, v)
		}
		return v, nil
	}
}

func (n *Normalizer) email(t, raw, v string) (string, error) {
	// Check UTF-8 before lowercasing: strings.ToLower replaces invalid
	// bytes with U+FFFD, which would turn junk into a valid-looking address.
	if !utf8.ValidString(v) {
		return "", newError(t, raw, ReasonInvalidEmail,
			fmt.Sprintf("%s value %q is not a valid email address: not valid UTF-8", t, clip(raw)))
	}
	v = strings.ToLower(v)
	// Blocklist before syntax, so that "NULL" or "N/A" is reported as
	// blocked rather than as a malformed address.
	if n.isBlocked(v) {
		return "", blockedError(t, raw, v)
	}
	if problem := checkEmail(v); problem != "" {
		return "", newError(t, raw, ReasonInvalidEmail,
			fmt.Sprintf("%s value %q is not a valid email address: %s", t, clip(raw), problem))
	}
	return v, nil
}

// cachedPhone is phone, remembered in n.cache.
func (n *Normalizer) cachedPhone(t, raw, v string) (string, error) {
	if n.cache == nil || len(raw) > maxCachedValueLen {
		return n.phone(t, raw, v)
	}
	k := phoneKey{whatsapp: t == schemas.IDWhatsApp, raw: raw}
	r, ok := n.cache.get(k)
	if !ok {
		e164, err := n.phone(t, raw, v)
		r = phoneResult{e164: e164}
		if err != nil {
			e, isErr := err.(*Error)
			if !isErr {
				return e164, err // phone returns *Error only; don't remember anything else
			}
			saved := *e
			saved.Value = ""
			r.err = &saved
		}
		n.cache.put(k, r)
	}
	if r.err != nil {
		// A copy per call: the caller owns the *Error it gets.
		e := *r.err
		e.Value = raw
		return "", &e
	}
	return r.e164, nil
}

func (n *Normalizer) phone(t, raw, v string) (string, error) {
	if isPlaceholderPhone(v) {
		return "", newError(t, raw, ReasonBlocked,
			fmt.Sprintf("%s value %q is a placeholder phone number", t, clip(raw)))
	}
	num, err := n.parseValidPhone(v, t == schemas.IDWhatsApp)
	if err != nil {
		return "", newError(t, raw, ReasonInvalidPhone,
			fmt.Sprintf("%s value %q is not a valid phone number (default region %s): %v", t, clip(raw), n.region, err))
	}
	if placeholderSubscriber(num) {
		return "", newError(t, raw, ReasonBlocked,
			fmt.Sprintf("%s value %q is a placeholder phone number", t, clip(raw)))
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if n.isBlocked(e164) {
		return "", blockedError(t, raw, e164)
	}
	return e164, nil
}

var errNotValid = errors.New("not a valid number for its region")

// parseValidPhone parses v and returns it if it is a valid number.
//
// A value starting with "00" is first read as international ("00" -> "+"),
// because phonenumbers only honours the default region's own international
// prefix (Brazil's is "00" plus a carrier code, so "0044 20 ..." is not
// recognised with region BR); if that is not valid, the value is parsed as
// is, which covers Brazilian carrier-selection dialling ("0021 1 212 ...").
//
// For WhatsApp, whose ids are international numbers without "+"
// ("14155552671"), a value of plain digits that is not valid in the default
// region is retried as "+" + digits.
func (n *Normalizer) parseValidPhone(v string, whatsapp bool) (*phonenumbers.PhoneNumber, error) {
	if strings.HasPrefix(v, "00") {
		if num, err := n.parsePhone("+" + v[2:]); err == nil && n.valid(num) {
			return num, nil
		}
	}
	num, err := n.parsePhone(v)
	if err == nil && n.valid(num) {
		return num, nil
	}
	if whatsapp && v[0] != '0' && isDigits(v) {
		if num2, err2 := n.parsePhone("+" + v); err2 == nil && n.valid(num2) {
			return num2, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return nil, errNotValid
}

// parsePhone is phonenumbers.Parse(v, n.region): through the fast path
// when v is written plainly, else through parsePhone.
func (n *Normalizer) parsePhone(v string) (*phonenumbers.PhoneNumber, error) {
	if num, ok := n.phones.parse(v); ok {
		return num, nil
	}
	return parsePhone(v, n.region)
}

// parsePhone wraps phonenumbers.Parse, turning a panic inside the library
// into an error: this package must not panic on any input.
func parsePhone(v, region string) (num *phonenumbers.PhoneNumber, err error) {
	defer func() {
		if r := recover(); r != nil {
			num, err = nil, fmt.Errorf("phone number parser failed: %v", r)
		}
	}()
	return phonenumbers.Parse(v, region)
}

// isPlaceholderPhone reports whether the digits of v (ignoring every other
// character) are one repeated digit or one ascending run: "0000000000",
// "(11) 1111-1111", "123456789", "1234567890".
func isPlaceholderPhone(v string) bool {
	var (
		count   int
		first   byte
		prev    byte
		same    = true
		ascends = true
	)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			continue
		}
		if count == 0 {
			first = c
		} else {
			if c != first {
				same = false
			}
			if c != nextDigit(prev) {
				ascends = false
			}
		}
		prev = c
		count++
	}
	return (same && count >= minRepeatedDigits) || (ascends && count >= minAscendingRun)
}

// placeholderSubscriber reports whether the subscriber number of a valid
// phone (its national number without the area code) is a placeholder:
// "(11) 99999-9999", "(11) 1234-5678", "+1 212 555 5555".
func placeholderSubscriber(num *phonenumbers.PhoneNumber) bool {
	// Cheap pre-check: the last few digits must be equal or ascending.
	if !suspiciousTail(num.GetNationalNumber()) {
		return false
	}
	digits := phonenumbers.GetNationalSignificantNumber(num)
	ndc := phonenumbers.GetLengthOfNationalDestinationCode(num)
	if ndc < 0 || ndc >= len(digits) {
		ndc = 0
	}
	return isPlaceholderPhone(digits[ndc:])
}

// suspiciousTail reports whether the last minRepeatedDigits digits of x are
// all equal or ascending.
func suspiciousTail(x uint64) bool {
	last := x % 10
	same, asc := true, true
	for i := 1; i < minRepeatedDigits; i++ {
		x /= 10
		d := x % 10
		if d != last {
			same = false
		}
		if (d+1)%10 != last {
			asc = false
		}
		last = d
		if !same && !asc {
			return false
		}
	}
	return true
}

func nextDigit(c byte) byte {
	if c == '9' {
		return '0'
	}
	return c + 1
}

func isDigits(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return len(v) > 0
}

func isASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isAllZeros(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] != '0' {
			return false
		}
	}
	return len(v) > 0
}

// trim removes Unicode white space and the invisible characters that
// copy-pasting leaves around values (zero-width space, word joiner, BOM).
func trim(s string) string {
	return strings.TrimFunc(s, isTrimmable)
}

func isTrimmable(r rune) bool {
	return unicode.IsSpace(r) || r == '\u200b' || r == '\u2060' || r == '\ufeff'
}

// clip shortens v for error messages.
func clip(v string) string {
	const max = 64
	if len(v) <= max {
		return v
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "…"
}
