package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// CloudEvents 1.0 over HTTP (https://github.com/cloudevents/spec, v1.0.2:
// the core spec, the JSON event format and the HTTP protocol binding). The
// CloudEvent's attributes give the event's id, type, source and time; its
// data carries the rest of our event fields (identifiers, traits,
// properties). An event the spec calls invalid is refused, as the
// conformance suite (github.com/cloudevents/conformance, format/json)
// expects; testdata/cloudevents holds its vectors.

// Content types.
const (
	ContentJSON        = "application/json"
	ContentCE          = "application/cloudevents+json"
	ContentCEBatch     = "application/cloudevents-batch+json"
	headerCESpec       = "ce-specversion"
	cloudEventsVersion = "1.0"
)

// The attributes of the core spec; every other attribute is an extension.
// All of them are strings in the JSON format.
var coreAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true,
	"datacontenttype": true, "dataschema": true, "subject": true, "time": true,
}

// attrNameRe is the attribute naming convention of the core spec.
var attrNameRe = regexp.MustCompile(`^[a-z0-9]+$`)

// integerRe is a CloudEvents Integer in JSON: only the integer component,
// optionally prefixed with a minus sign (JSON format, type system mapping).
var integerRe = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// DecodeCloudEvent decodes one structured-mode CloudEvent into an event.
func DecodeCloudEvent(b []byte) (*schemas.RawEvent, error) {
	if err := schemas.CheckJSONText(b); err != nil {
		return nil, err // before encoding/json turns it into U+FFFD
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return nil, fmt.Errorf("not a JSON CloudEvent: %w", err)
	}
	if members == nil {
		return nil, errors.New("not a JSON CloudEvent: a CloudEvent is a JSON object")
	}
	data, hasData := members["data"]
	b64, hasB64 := members["data_base64"]
	delete(members, "data")
	delete(members, "data_base64")
	names := slices.Sorted(maps.Keys(members))
	problems := nameProblems(names)
	attrs := map[string]string{}
	for _, name := range names {
		v, set, err := jsonAttribute(name, members[name])
		if err != nil {
			problems = append(problems, err.Error())
		} else if set {
			attrs[name] = v
		}
	}
	problems = append(problems, attributeProblems(attrs)...)
	if hasB64 && !isNull(b64) {
		if hasData {
			problems = append(problems, "a CloudEvent has either data or data_base64, not both")
		} else {
			problems = append(problems, "CloudEvent data_base64 is not supported; send data as a JSON object")
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return cloudEventData(attrs, data)
}

// DecodeCloudEventBinary decodes a binary-mode CloudEvent: attributes in
// ce-* headers, data in the body.
func DecodeCloudEventBinary(h http.Header, body []byte) (*schemas.RawEvent, error) {
	attrs := map[string]string{}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok && len(vs) > 0 {
			attrs[name] = vs[0]
		}
	}
	names := slices.Sorted(maps.Keys(attrs))
	// Text that is not UTF-8 is refused as such, before any rule reads it.
	for _, name := range names {
		if err := schemas.CheckUTF8(name, attrs[name]); err != nil {
			return nil, err
		}
	}
	problems := append(nameProblems(names), attributeProblems(attrs)...)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return cloudEventData(attrs, body)
}

// nameProblems checks attribute names against the naming convention.
func nameProblems(names []string) []string {
	var out []string
	for _, name := range names {
		if !attrNameRe.MatchString(name) {
			out = append(out, fmt.Sprintf("CloudEvent attribute name %q is invalid: names have only lower-case letters a-z and digits 0-9", name))
		}
	}
	return out
}

// jsonAttribute checks the value of one attribute of a JSON CloudEvent
// against the type system mapping and returns it as text; set is false for
// null, which means unset.
func jsonAttribute(name string, raw json.RawMessage) (v string, set bool, err error) {
	if isNull(raw) {
		return "", false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, nil
	}
	if coreAttributes[name] {
		return "", false, fmt.Errorf("CloudEvent %s must be a string, got %s", name, raw)
	}
	switch t := string(raw); {
	case t == "true" || t == "false":
		return t, true, nil
	case integerRe.MatchString(t):
		if n, err := strconv.ParseInt(t, 10, 64); err == nil && n >= math.MinInt32 && n <= math.MaxInt32 {
			return t, true, nil
		}
		return "", false, fmt.Errorf("CloudEvent extension %q: %s is outside the Integer range of 32 bits", name, t)
	case len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9'):
		return "", false, fmt.Errorf("CloudEvent extension %q: %s is not an integer; a number attribute must be a whole number (send other numbers as strings)", name, t)
	}
	return "", false, fmt.Errorf("CloudEvent extension %q must be a string, an integer or a boolean, got %s", name, raw)
}

// attributeProblems checks the attributes' values against the core spec and
// what Rolodex reads; the attributes are set (not null) and their names
// valid.
func attributeProblems(attrs map[string]string) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if spec, ok := attrs["specversion"]; !ok {
		bad("CloudEvent specversion is required (%q)", cloudEventsVersion)
	} else if spec != cloudEventsVersion {
		bad("CloudEvent specversion must be %q, got %q", cloudEventsVersion, spec)
	}
	for _, name := range []string{"id", "type", "source"} {
		if attrs[name] == "" {
			bad("CloudEvent %s is required and must not be empty", name)
		}
	}
	if src := attrs["source"]; src != "" {
		if _, err := url.Parse(src); err != nil {
			bad("CloudEvent source %q is not a URI-reference", src)
		}
	}
	if ct, ok := attrs["datacontenttype"]; ok {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil || !strings.Contains(mt, "/"):
			bad("CloudEvent datacontenttype %q is not a media type (RFC 2046, e.g. application/json)", ct)
		case !isJSON(ct):
			bad("CloudEvent datacontenttype %q is not supported; data must be JSON (application/json or another */json or */*+json type)", ct)
		}
	}
	if ds, ok := attrs["dataschema"]; ok {
		if u, err := url.Parse(ds); err != nil || !u.IsAbs() {
			bad("CloudEvent dataschema %q must be a non-empty absolute URI", ds)
		}
	}
	if sub, ok := attrs["subject"]; ok && sub == "" {
		bad("CloudEvent subject must not be empty when present")
	}
	if t, ok := attrs["time"]; ok {
		if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
			bad("CloudEvent time %q is not an RFC 3339 timestamp (e.g. 2018-04-05T17:31:00Z)", t)
		}
	}
	return out
}

// cloudEventData builds the event from valid attributes and the data.
func cloudEventData(attrs map[string]string, data []byte) (*schemas.RawEvent, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("CloudEvent data must be a JSON object with identifiers, traits and properties")
	}
	var ev schemas.RawEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("CloudEvent data: %w", err)
	}
	ev.ID, ev.Type, ev.Source, ev.Time = attrs["id"], attrs["type"], attrs["source"], attrs["time"]
	return &ev, nil
}

// isJSON reports whether a media type declares JSON content: subtype json
// or a +json suffix (JSON event format, section 3.1).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	_, sub, _ := strings.Cut(mt, "/")
	return sub == "json" || strings.HasSuffix(sub, "+json")
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
