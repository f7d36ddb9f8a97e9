package normalize

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// The phone fast path.
//
// phonenumbers.Parse spends most of its time in regular expressions that
// look for things a plainly written number cannot contain: an extension
// ("ext. 12", "x12", ";ext=", "#", ",,"), an RFC 3966 phone-context, letters
// (vanity numbers), full-width or Arabic-Indic digits. fastParse handles
// exactly the values that can contain none of these: ASCII digits, the
// separators ' ', '(', ')', '-', '.', and at most one '+' before the first
// digit. For such a value it runs the remaining steps of Parse
// (phonenumbers' parseHelper) as written there: the international prefix
// or '+', the country calling code, the default region's own country code
// written without '+', the national prefix and carrier code, the possible
// lengths, the leading zeros. It uses the same metadata and the same
// region-specific patterns, compiled once per region. It builds the same
// PhoneNumber Parse would build.
//
// Whenever Parse would fail, or a step is one fastParse does not cover,
// fastParse reports ok=false and the caller runs Parse itself: errors come
// from Parse only. FuzzPhoneFastPath compares the two.

// phoneMeta is the part of one region's (or non-geographical calling
// code's) metadata that parsing uses, with its patterns compiled.
type phoneMeta struct {
	countryCode int32
	ccString    string
	// idd matches the international dialling prefix at the start of a
	// number; nil when the region has none.
	idd *regexp.Regexp
	// nationalPrefix matches the national prefix (and carrier code) for
	// parsing at the start of a number; nil when the region has none.
	nationalPrefix *regexp.Regexp
	transformRule  string
	// nationalNumber is the general description's national number
	// pattern, anchored at both ends.
	nationalNumber *regexp.Regexp
	possible       []int32
	localOnly      []int32
	// parseOK: the fields above are usable (the metadata is complete).
	parseOK bool

	// For validation (IsValidNumber); validOK says they are usable.
	validOK bool
	// leadingDigits tells the regions of a shared calling code apart;
	// nil when the region has none.
	leadingDigits *regexp.Regexp
	general       phoneDesc
	// special are the descriptions getNumberTypeHelper tries before fixed
	// line and mobile: premium rate, toll free, shared cost, VoIP,
	// personal number, pager, UAN, voicemail.
	special         [8]phoneDesc
	fixedLine       phoneDesc
	mobile          phoneDesc
	sameMobileFixed bool
}

// phoneDesc is one number description (a number type), compiled.
type phoneDesc struct {
	possible []int32
	pattern  *regexp.Regexp // anchored at both ends
}

// matches is phonenumbers' isNumberMatchingDesc.
func (d *phoneDesc) matches(nsn string) bool {
	if len(d.possible) > 0 && !slices.Contains(d.possible, int32(len(nsn))) {
		return false
	}
	return d.pattern.MatchString(nsn)
}

var (
	phoneMetaOnce    sync.Once
	phoneMetaRegions map[string]*phonenumbers.PhoneMetadata
	phoneMetaNonGeo  map[int32]*phonenumbers.PhoneMetadata
	// phoneMetaCache holds compiled *phoneMeta by region code (string) or
	// non-geographical calling code (int32); a nil *phoneMeta marks
	// metadata fastParse cannot use.
	phoneMetaCache sync.Map
)

func loadPhoneMetadata() {
	phoneMetaRegions = map[string]*phonenumbers.PhoneMetadata{}
	phoneMetaNonGeo = map[int32]*phonenumbers.PhoneMetadata{}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return // every lookup fails: fastParse always defers to Parse
	}
	// The same mapping phonenumbers builds at init (newMetadataContainer).
	for _, m := range coll.GetMetadata() {
		if m.GetId() == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
			phoneMetaNonGeo[m.GetCountryCode()] = m
		} else {
			phoneMetaRegions[m.GetId()] = m
		}
	}
}

// metaForRegion returns the compiled metadata of a supported region, or nil
// (getMetadataForRegion).
func metaForRegion(region string) *phoneMeta {
	if v, ok := phoneMetaCache.Load(region); ok {
		return v.(*phoneMeta)
	}
	phoneMetaOnce.Do(loadPhoneMetadata)
	var pm *phoneMeta
	if phonenumbers.GetSupportedRegions()[region] {
		pm = compilePhoneMeta(phoneMetaRegions[region])
	}
	v, _ := phoneMetaCache.LoadOrStore(region, pm)
	return v.(*phoneMeta)
}

// metaForCallingCode returns the metadata Parse uses for a number whose
// country calling code is cc: that of cc's main region, or cc's
// non-geographical metadata (getMetadataForRegionOrCallingCode).
func metaForCallingCode(cc int) *phoneMeta {
	region := phonenumbers.GetRegionCodeForCountryCode(cc)
	if region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		return metaForRegion(region)
	}
	key := int32(cc)
	if v, ok := phoneMetaCache.Load(key); ok {
		return v.(*phoneMeta)
	}
	phoneMetaOnce.Do(loadPhoneMetadata)
	v, _ := phoneMetaCache.LoadOrStore(key, compilePhoneMeta(phoneMetaNonGeo[key]))
	return v.(*phoneMeta)
}

// compilePhoneMeta compiles the patterns of m the way phonenumbers builds
// them. It returns nil for nil metadata; parseOK and validOK are false for
// metadata phonenumbers would not handle normally (it would panic on a
// missing general description, for one).
func compilePhoneMeta(m *phonenumbers.PhoneMetadata) *phoneMeta {
	if m == nil {
		return nil
	}
	pm := &phoneMeta{
		countryCode:     m.GetCountryCode(),
		ccString:        strconv.Itoa(int(m.GetCountryCode())),
		transformRule:   m.GetNationalPrefixTransformRule(),
		sameMobileFixed: m.GetSameMobileAndFixedLinePattern(),
	}
	gd := m.GetGeneralDesc()
	if gd == nil || len(gd.PossibleLength) == 0 {
		return pm
	}
	pm.possible, pm.localOnly = gd.PossibleLength, gd.PossibleLengthLocalOnly
	var err error
	// Parse matches the unanchored prefix and requires the match to start
	// at 0; the leftmost match starts at 0 whenever one does, so the
	// anchored pattern finds the same match.
	if idd := m.GetInternationalPrefix(); idd != "" {
		if pm.idd, err = regexp.Compile("^(?:" + idd + ")"); err != nil {
			return pm
		}
	}
	if np := m.GetNationalPrefixForParsing(); np != "" {
		if pm.nationalPrefix, err = regexp.Compile("^(?:" + np + ")"); err != nil {
			return pm
		}
	}
	if pm.nationalNumber, err = regexp.Compile("^(?:" + gd.GetNationalNumberPattern() + ")$"); err != nil {
		return pm
	}
	pm.parseOK = true

	if ld := m.GetLeadingDigits(); ld != "" {
		if pm.leadingDigits, err = regexp.Compile("^(?:" + ld + ")"); err != nil {
			return pm
		}
	}
	descs := []struct {
		dst *phoneDesc
		src *phonenumbers.PhoneNumberDesc
	}{
		{&pm.general, gd},
		{&pm.special[0], m.GetPremiumRate()}, {&pm.special[1], m.GetTollFree()},
		{&pm.special[2], m.GetSharedCost()}, {&pm.special[3], m.GetVoip()},
		{&pm.special[4], m.GetPersonalNumber()}, {&pm.special[5], m.GetPager()},
		{&pm.special[6], m.GetUan()}, {&pm.special[7], m.GetVoicemail()},
		{&pm.fixedLine, m.GetFixedLine()}, {&pm.mobile, m.GetMobile()},
	}
	for _, d := range descs {
		if d.src == nil {
			return pm
		}
		d.dst.possible = d.src.PossibleLength
		if d.dst.pattern, err = regexp.Compile("^(?:" + d.src.GetNationalNumberPattern() + ")$"); err != nil {
			return pm
		}
	}
	pm.validOK = true
	return pm
}

// numberTypeKnown reports whether phonenumbers' getNumberTypeHelper finds
// a type (not UNKNOWN) for nsn. m.validOK must hold.
func (m *phoneMeta) numberTypeKnown(nsn string) bool {
	if !m.general.matches(nsn) {
		return false
	}
	for i := range m.special {
		if m.special[i].matches(nsn) {
			return true
		}
	}
	if m.fixedLine.matches(nsn) {
		return true
	}
	return !m.sameMobileFixed && m.mobile.matches(nsn)
}

// isValidNumber is phonenumbers.IsValidNumber, with the patterns compiled
// once instead of looked up (and built as strings) on every call. It runs
// IsValidNumber itself for metadata it cannot use.
func isValidNumber(num *phonenumbers.PhoneNumber) bool {
	cc := int(num.GetCountryCode())
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	// GetRegionCodeForNumber.
	var region string
	switch regions := phonenumbers.GetRegionCodesForCountryCode(cc); len(regions) {
	case 0:
	case 1:
		region = regions[0]
	default:
		for _, r := range regions {
			m := metaForRegion(r)
			if m == nil || !m.validOK {
				return phonenumbers.IsValidNumber(num)
			}
			if m.leadingDigits != nil {
				if m.leadingDigits.MatchString(nsn) {
					region = r
					break
				}
			} else if m.numberTypeKnown(nsn) {
				region = r
				break
			}
		}
	}
	// IsValidNumberForRegion.
	var m *phoneMeta
	if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		m = metaForCallingCode(cc)
	} else {
		m = metaForRegion(region)
	}
	switch {
	case m == nil:
		return false
	case !m.validOK:
		return phonenumbers.IsValidNumber(num)
	case region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY && cc != int(m.countryCode):
		return false
	}
	return m.numberTypeKnown(nsn)
}

// phoneParser is fastParse for one default region.
type phoneParser struct {
	region string
	def    *phoneMeta
	codes  map[int]bool // supported country calling codes
}

func newPhoneParser(region string) *phoneParser {
	def := metaForRegion(region)
	if def == nil || !def.parseOK || def.idd == nil {
		// A region without an international prefix makes Parse treat
		// "NonMatch" as one; rare enough to leave to Parse.
		return nil
	}
	return &phoneParser{region: region, def: def, codes: phonenumbers.GetSupportedCallingCodes()}
}

// maxFastDigits bounds the digits of a value fastParse handles; longer
// values go to Parse (a national number has at most 17 digits).
const maxFastDigits = 24

// parse returns what phonenumbers.Parse(v, p.region) returns when Parse
// succeeds and v is a plainly written number; ok=false otherwise. v is
// trimmed and not empty.
func (p *phoneParser) parse(v string) (num *phonenumbers.PhoneNumber, ok bool) {
	if p == nil || len(v) > phonenumbers.MAX_INPUT_STRING_LENGTH {
		return nil, false
	}
	// The value Parse extracts starts at the first digit or '+' and runs to
	// the end (with only these characters nothing is cut off the end), and
	// it normalises to its digits.
	var buf [maxFastDigits]byte
	digits := buf[:0]
	plus, started := false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if len(digits) == maxFastDigits {
				return nil, false
			}
			digits = append(digits, c)
			started = true
		case '+':
			if started {
				return nil, false
			}
			plus, started = true, true
		case ' ', '(', ')', '-', '.':
		default:
			return nil, false
		}
	}
	// Viable (VALID_PHONE_NUMBER_PATTERN): at least three digits. A value of
	// exactly two digits is viable too, but too short to go further.
	if len(digits) < 3 {
		return nil, false
	}
	d := string(digits)

	// maybeExtractCountryCode.
	var (
		cc   int
		nsn  string
		meta *phoneMeta
	)
	intl := plus
	full := d
	if !plus {
		// The default region's international prefix, unless the digit
		// after it is a 0 (country codes never start with 0).
		if loc := p.def.idd.FindStringIndex(d); loc != nil {
			if end := loc[1]; end >= len(d) || d[end] != '0' {
				intl, full = true, d[end:]
			}
		}
	}
	switch {
	case intl:
		if len(full) <= phonenumbers.MIN_LENGTH_FOR_NSN || full[0] == '0' {
			return nil, false
		}
		for i := 1; i <= phonenumbers.MAX_LENGTH_COUNTRY_CODE && i <= len(full); i++ {
			c, _ := strconv.Atoi(full[:i])
			if p.codes[c] {
				cc, nsn = c, full[i:]
				break
			}
		}
		if cc == 0 {
			return nil, false
		}
		meta = metaForCallingCode(cc)
	default:
		// The default region's country code written without '+': kept as
		// the country code when the number is valid only without it, or too
		// long with it.
		def := p.def
		if rest, found := strings.CutPrefix(d, def.ccString); found {
			national := def.stripNationalPrefix(rest)
			fullValid := def.nationalNumber.MatchString(d)
			nationalValid := def.nationalNumber.MatchString(national)
			if (!fullValid && nationalValid) || def.testLength(d) == phonenumbers.TOO_LONG {
				cc, nsn = int(def.countryCode), national
				meta = metaForCallingCode(cc)
				break
			}
		}
		cc, nsn, meta = int(def.countryCode), d, def
	}
	if len(nsn) < phonenumbers.MIN_LENGTH_FOR_NSN || meta == nil || !meta.parseOK {
		// No metadata fastParse can use: Parse knows what to do.
		return nil, false
	}
	// The national prefix and carrier code are stripped only if what is
	// left has a possible length.
	stripped := meta.stripNationalPrefix(nsn)
	switch meta.testLength(stripped) {
	case phonenumbers.TOO_SHORT, phonenumbers.IS_POSSIBLE_LOCAL_ONLY, phonenumbers.INVALID_LENGTH:
	default:
		nsn = stripped
	}
	if len(nsn) < phonenumbers.MIN_LENGTH_FOR_NSN || len(nsn) > phonenumbers.MAX_LENGTH_FOR_NSN {
		return nil, false
	}
	national, err := strconv.ParseUint(nsn, 10, 64)
	if err != nil {
		return nil, false
	}
	return newPhoneNumber(int32(cc), national, nsn), true
}

// phoneNumberAlloc holds a PhoneNumber and the values its pointer fields
// point to, so that building one costs one allocation.
type phoneNumberAlloc struct {
	num          phonenumbers.PhoneNumber
	countryCode  int32
	national     uint64
	leadingZero  bool
	leadingZeros int32
}

// newPhoneNumber builds the PhoneNumber Parse builds for a national
// significant number nsn (setItalianLeadingZerosForPhoneNumber included).
func newPhoneNumber(cc int32, national uint64, nsn string) *phonenumbers.PhoneNumber {
	a := &phoneNumberAlloc{countryCode: cc, national: national}
	a.num.CountryCode = &a.countryCode
	a.num.NationalNumber = &a.national
	if len(nsn) >= 2 && nsn[0] == '0' {
		a.leadingZero = true
		a.num.ItalianLeadingZero = &a.leadingZero
		zeros := 1
		for zeros < len(nsn)-1 && nsn[zeros] == '0' {
			zeros++
		}
		if zeros != 1 {
			a.leadingZeros = int32(zeros)
			a.num.NumberOfLeadingZeros = &a.leadingZeros
		}
	}
	return &a.num
}

// stripNationalPrefix is phonenumbers' maybeStripNationalPrefixAndCarrierCode
// without the carrier code (Parse does not keep it): it returns number
// without its national prefix, or number itself.
func (m *phoneMeta) stripNationalPrefix(number string) string {
	if len(number) == 0 || m.nationalPrefix == nil {
		return number
	}
	groups := m.nationalPrefix.FindStringSubmatchIndex(number)
	if groups == nil {
		return number
	}
	viable := m.nationalNumber.MatchString(number)
	numGroups := len(groups)/2 - 1
	if m.transformRule == "" || groups[numGroups*2] < 0 {
		if viable && !m.nationalNumber.MatchString(number[groups[1]:]) {
			return number
		}
		return number[groups[1]:]
	}
	transformed := m.nationalPrefix.ReplaceAllString(number, m.transformRule)
	if viable && !m.nationalNumber.MatchString(transformed) {
		return number
	}
	return transformed
}

// testLength is phonenumbers' testNumberLength for the UNKNOWN type.
func (m *phoneMeta) testLength(number string) phonenumbers.ValidationResult {
	if m.possible[0] == -1 {
		return phonenumbers.INVALID_LENGTH
	}
	n := int32(len(number))
	for _, l := range m.localOnly {
		if l == n {
			return phonenumbers.IS_POSSIBLE_LOCAL_ONLY
		}
	}
	switch min := m.possible[0]; {
	case min == n:
		return phonenumbers.IS_POSSIBLE
	case min > n:
		return phonenumbers.TOO_SHORT
	case m.possible[len(m.possible)-1] < n:
		return phonenumbers.TOO_LONG
	}
	for _, l := range m.possible[1:] {
		if l == n {
			return phonenumbers.IS_POSSIBLE
		}
	}
	return phonenumbers.INVALID_LENGTH
}
