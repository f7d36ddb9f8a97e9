package normalize

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkEmail checks the syntax of a trimmed, lowercased, valid UTF-8 email
// address and returns what is wrong with it, or "" if it is valid. Cheap
// structural checks run first; net/mail.ParseAddress validates the addr-spec last, and
// its result must equal the input, which rejects display names, angle
// brackets, comments and quoted local parts.
func checkEmail(v string) string {
	at := strings.IndexByte(v, '@')
	if at < 0 {
		return "missing '@'"
	}
	if strings.IndexByte(v[at+1:], '@') >= 0 {
		return "more than one '@'"
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "contains white space or control characters"
		}
	}
	local, domain := v[:at], v[at+1:]
	if local == "" {
		return "empty local part"
	}
	if len(local) > maxEmailLocalLen {
		return "local part longer than 64 bytes"
	}
	if problem := checkDomain(domain); problem != "" {
		return problem
	}
	addr, err := mail.ParseAddress(v)
	if err != nil {
		return strings.TrimPrefix(err.Error(), "mail: ")
	}
	if addr.Name != "" || addr.Address != v {
		return "not a bare address (display name, angle brackets, comments or quotes)"
	}
	return ""
}

// checkDomain checks an email domain: at least two dot-separated labels,
// each 1-63 bytes of letters, digits, '-' or non-ASCII (internationalised
// domains), not starting or ending with '-'; the last label is not
// all-digits (no IP addresses).
func checkDomain(domain string) string {
	if domain == "" {
		return "empty domain"
	}
	if len(domain) > maxEmailDomainLen {
		return "domain longer than 253 bytes"
	}
	if strings.IndexByte(domain, '.') < 0 {
		return "domain has no dot"
	}
	allDigits := true
	start := 0
	for i := 0; i <= len(domain); i++ {
		if i < len(domain) && domain[i] != '.' {
			c := domain[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c == '-', c >= utf8.RuneSelf:
				allDigits = false
			default:
				return "domain contains an invalid character"
			}
			continue
		}
		label := domain[start:i]
		switch {
		case label == "":
			return "domain has an empty label"
		case len(label) > maxDomainLabelLen:
			return "domain label longer than 63 bytes"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "domain label starts or ends with '-'"
		}
		if i == len(domain) && allDigits {
			return "top-level domain is numeric"
		}
		allDigits = true
		start = i + 1
	}
	return ""
}
