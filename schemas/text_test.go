package schemas

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/internal/jsonscan/jsonscantest"
)

// invalidTextCases put text that is not Unicode in every text field of an
// event, and around it. A | marks where (and is removed): the first invalid
// byte, or the backslash of the escape.
var invalidTextCases = []struct {
	name, doc, field, escape string
}{
	{"id", `{"id":"a|\xff\xfe","type":"t"}`, "id", ""},
	{"type", `{"id":"a","type":"page.|\xc3"}`, "type", ""},
	{"time", `{"id":"a","time":"2026-11-22T10:00:00|\xff"}`, "time", ""},
	{"source", `{"id":"a","source":"w|\xbfeb"}`, "source", ""},
	{"identifier value", `{"id":"a","identifiers":{"email":"nu|\xff\xfe@example.com"}}`, "identifiers.email", ""},
	{"identifier list element", `{"id":"a","identifiers":{"email":["ok@example.com","nu|\xff@example.com"]}}`, "identifiers.email[1]", ""},
	{"identifier type", `{"id":"a","identifiers":{"em|\xffail":"a@b.co"}}`, "a key in identifiers", ""},
	{"trait name", `{"id":"a","traits":{"na|\xe9me":"Ana"}}`, "a key in traits", ""},
	{"trait value", `{"id":"a","traits":{"name":"An|\xe3"}}`, "traits.name", ""},
	{"nested trait value", `{"id":"a","traits":{"address":{"lines":["ok","R|\xfaa"]}}}`, "traits.address.lines[1]", ""},
	{"nested trait key", `{"id":"a","traits":{"address":{"c|\xedty":"x"}}}`, "a key in traits.address", ""},
	{"property name", `{"id":"a","properties":{"p|\xc3\x28":1}}`, "a key in properties", ""},
	{"property value", `{"id":"a","properties":{"url":"/c|\xe2\x82"}}`, "properties.url", ""},
	{"unknown field", `{"id":"a","context":{"ip":"1.2.3.|\xff"}}`, "context.ip", ""},
	{"top-level key", `{"i|\xffd":"a"}`, "a key of the top-level object", ""},
	{"encoded surrogate", `{"id":"|\xed\xa0\x80"}`, "id", ""},
	{"overlong encoding", `{"id":"|\xc0\xaf"}`, "id", ""},
	{"lone high surrogate", `{"id":"x|\ud800"}`, "id", `\ud800`},
	{"lone low surrogate", `{"identifiers":{"user_id":"|\uDC00x"}}`, "identifiers.user_id", `\uDC00`},
	{"high surrogate, then not the low half", `{"traits":{"t":"|\ud83d\u0041"}}`, "traits.t", `\ud83d`},
	{"high surrogate, then another high", `{"type":"|\ud83d\ud83d\ude00"}`, "type", `\ud83d`},
	{"first of two", `{"id":"|\xff","type":"\xfe"}`, "id", ""},
	{"escaped key on the path", `{"tr\u0061its":{"n":"|\xff"}}`, "traits.n", ""},
	{"batch element", `[{"id":"ok"},{"id":"|\xff"}]`, "[1].id", ""},
	{"top-level string", `"|\xff"`, "the top-level string", ""},
}

func TestCheckJSONText(t *testing.T) {
	for _, tt := range invalidTextCases {
		t.Run(tt.name, func(t *testing.T) {
			doc := jsonscantest.Bin(strings.Replace(tt.doc, "|", "", 1))
			at := strings.Index(jsonscantest.Bin(tt.doc), "|")
			err := CheckJSONText([]byte(doc))
			var ie *InvalidUTF8Error
			if !errors.As(err, &ie) {
				t.Fatalf("CheckJSONText(%q) = %v, want an *InvalidUTF8Error", doc, err)
			}
			want := InvalidUTF8Error{Field: tt.field, Offset: at, InDocument: true, Escape: tt.escape}
			if *ie != want {
				t.Fatalf("CheckJSONText(%q) = %+v, want %+v", doc, *ie, want)
			}
			if !strings.Contains(err.Error(), "byte "+strconv.Itoa(at)) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("message %q names neither the byte nor the field", err)
			}
		})
	}
	// Where there is none, or the document is not JSON, there is no error
	// (see jsonscan.FindInvalidText).
	for _, doc := range []string{`{"id":"caf\u00e9\ud83d\ude00"}`, `{"id":"\xff"`} {
		if err := CheckJSONText([]byte(jsonscantest.Bin(doc))); err != nil {
			t.Errorf("CheckJSONText(%q) = %v, want nil", jsonscantest.Bin(doc), err)
		}
	}
}

// Both decoders of events reject text that is not Unicode, wherever it is,
// with the error of CheckJSONText: nothing is replaced with U+FFFD.
func TestDecodeRejectsInvalidText(t *testing.T) {
	for _, tt := range invalidTextCases {
		if strings.HasPrefix(tt.doc, "[") || strings.HasPrefix(tt.doc, `"`) {
			continue // not an event
		}
		t.Run(tt.name, func(t *testing.T) {
			doc := []byte(jsonscantest.Bin(strings.Replace(tt.doc, "|", "", 1)))
			want := CheckJSONText(doc)
			if ev, err := DecodeRawEventJSON(doc); err == nil || err.Error() != want.Error() {
				t.Fatalf("DecodeRawEventJSON(%q) = %+v, %v; want %v", doc, ev, err, want)
			}
			var ev RawEvent
			if err := json.Unmarshal(doc, &ev); err == nil || err.Error() != want.Error() {
				t.Fatalf("json.Unmarshal(%q) = %+v, %v; want %v", doc, ev, err, want)
			}
		})
	}
}

// Two ids that differ only in their invalid bytes used to decode to the
// same id, and one event was then dropped as a duplicate.
func TestDistinctInvalidIDsDoNotCollapse(t *testing.T) {
	for _, doc := range []string{`{"id":"a\xff","type":"t"}`, `{"id":"a\xfe","type":"t"}`, `{"id":"a\ud800","type":"t"}`, `{"id":"a\udc00","type":"t"}`} {
		if ev, err := DecodeRawEventJSON([]byte(jsonscantest.Bin(doc))); err == nil {
			t.Errorf("%q decoded, id %q", doc, ev.ID)
		}
	}
}

func okRawEvent() *RawEvent {
	return &RawEvent{ID: "e-1", Type: "t", Time: "2026-11-22T10:00:00Z", Source: "web",
		Identifiers: map[string][]string{"email": {"a@b.co"}, "phone": {"+5511912345678", "+5511912345679"}},
		Traits:      map[string]json.RawMessage{"name": json.RawMessage(`"Ana"`), "age": json.RawMessage(`31`)},
		Properties:  map[string]json.RawMessage{"url": json.RawMessage(`"/x"`)}}
}

// rawTextCases put invalid UTF-8 in every text of a decoded event.
var rawTextCases = []struct {
	name  string
	edit  func(r *RawEvent)
	field string
	at    int
}{
	{"id", func(r *RawEvent) { r.ID = "e-\xff" }, "id", 2},
	{"type", func(r *RawEvent) { r.Type = "\xfet" }, "type", 0},
	{"time", func(r *RawEvent) { r.Time = "2026\xff" }, "time", 4},
	{"source", func(r *RawEvent) { r.Source = "w\xc3" }, "source", 1},
	{"identifier type", func(r *RawEvent) { r.Identifiers["e\xffmail"] = []string{"x"} }, "a key in identifiers", 1},
	{"identifier value", func(r *RawEvent) { r.Identifiers["phone"][1] = "+55\xff" }, "identifiers.phone[1]", 3},
	{"trait name", func(r *RawEvent) { r.Traits["n\xe9"] = json.RawMessage(`1`) }, "a key in traits", 1},
	{"trait value", func(r *RawEvent) { r.Traits["name"] = json.RawMessage("\"An\xe3\"") }, "traits.name", 3},
	{"property name", func(r *RawEvent) { r.Properties["\xff"] = json.RawMessage(`1`) }, "a key in properties", 0},
	{"property value", func(r *RawEvent) { r.Properties["url"] = json.RawMessage("\"/\xff\"") }, "properties.url", 2},
}

func wantInvalidUTF8(t *testing.T, err error, field string, at int) {
	t.Helper()
	var ie *InvalidUTF8Error
	if !errors.As(err, &ie) || *ie != (InvalidUTF8Error{Field: field, Offset: at}) {
		t.Fatalf("err = %v, want invalid UTF-8 in %s at byte %d", err, field, at)
	}
}

func TestRawEventCheckUTF8(t *testing.T) {
	if err := okRawEvent().CheckUTF8(); err != nil {
		t.Fatalf("a valid event: %v", err)
	}
	for _, tt := range rawTextCases {
		t.Run(tt.name, func(t *testing.T) {
			r := okRawEvent()
			tt.edit(r)
			wantInvalidUTF8(t, r.CheckUTF8(), tt.field, tt.at)
		})
	}
	r := okRawEvent()
	r.Source, r.Traits["name"] = "\xff", json.RawMessage("\"\xff\"")
	wantInvalidUTF8(t, r.CheckUTF8(), "source", 0) // the first, in the documented order
}

// An event produced in Avro with invalid UTF-8 in any text is rejected, not
// decoded with U+FFFD in its place.
func TestDecodeIngestAvroRejectsInvalidText(t *testing.T) {
	cases := append(rawTextCases, struct {
		name  string
		edit  func(r *RawEvent)
		field string
		at    int
	}{"trait value that is not JSON", func(r *RawEvent) { r.Traits["name"] = json.RawMessage("An\xe3") }, "traits.name", 2})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := okRawEvent()
			tt.edit(r)
			b, err := EncodeIngestAvro(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeIngestAvro(b)
			if err == nil {
				t.Fatalf("decoded as %+v", got)
			}
			wantInvalidUTF8(t, err, tt.field, tt.at)
		})
	}
}
