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
// brackets, comments and quoted local parts. A plain local part (ASCII
// dot-atom, plainLocalPart) skips the parse, whose answer is known.
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
	if plainLocalPart(local) {
		// What net/mail would accept as it is: see plainLocalPart.
		return ""
	}
	return parseEmail(v)
}

// parseEmail is the last check of checkEmail: net/mail.ParseAddress must
// read v as a bare address equal to v.
func parseEmail(v string) string {
	addr, err := mail.ParseAddress(v)
	if err != nil {
		return strings.TrimPrefix(err.Error(), "mail: ")
	}
	if addr.Name != "" || addr.Address != v {
		return "not a bare address (display name, angle brackets, comments or quotes)"
	}
	return ""
}

// plainLocalPart reports whether local is a dot-atom of ASCII atext
// (RFC 5322: letters, digits and !#$%&'*+-/=?^_`{|}~, joined by single
// dots, none leading or trailing). Then net/mail.ParseAddress reads
// local@domain, for any domain checkDomain accepts (labels of letters,
// digits, '-' and non-ASCII runes: atext as well, between single dots), as
// the bare address local@domain: the dot-atom local part stops at the '@',
// the dot-atom domain runs to the end, and nothing is left for a display
// name, a comment or an angle-addr. So the parse can be skipped: it costs
// more than the rest of the checks together. TestCheckEmailFastPath and
// FuzzCheckEmail hold the two paths to the same answers.
func plainLocalPart(local string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c >= 'A' && c <= 'Z':
		case c == '.':
			if local[i-1] == '.' {
				return false
			}
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
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
