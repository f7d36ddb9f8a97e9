package httpin

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/schemas"
)

// marked returns doc, with each \xHH made that byte (JSON has no \x
// escape), without its "|", and the byte offset the "|" marked.
func marked(doc string) (string, int) {
	doc = hexByte.ReplaceAllStringFunc(doc, func(h string) string {
		v, _ := strconv.ParseUint(h[2:], 16, 8)
		return string([]byte{byte(v)})
	})
	return strings.Replace(doc, "|", "", 1), strings.Index(doc, "|")
}

var hexByte = regexp.MustCompile(`\\x[0-9a-f]{2}`)

// Text that is not valid UTF-8, in any text field of any kind of request, is
// answered 400 with its byte offset and field, dead-lettered as received,
// and nothing is written: before, it was stored with U+FFFD in its place.
func TestInvalidUTF8(t *testing.T) {
	e := newEnv(t, Config{})
	ids := `"identifiers":{"user_id":"u-1"}`
	plain := map[string]string{ // field -> event, "|" before the first invalid byte
		"id":                   `{"id":"e-|\xff\xfe","type":"t",` + ids + `}`,
		"type":                 `{"id":"e","type":"page.|\xc3",` + ids + `}`,
		"time":                 `{"id":"e","type":"t","time":"2026-11-22T10:00:00|\xffZ",` + ids + `}`,
		"source":               `{"id":"e","type":"t","source":"w|\xe9b",` + ids + `}`,
		"identifiers.email":    `{"id":"e","type":"t","identifiers":{"email":"nu|\xff\xfe@example.com"}}`,
		"identifiers.email[1]": `{"id":"e","type":"t","identifiers":{"email":["a@b.co","nu|\xff\xfe@example.com"]}}`,
		"a key in identifiers": `{"id":"e","type":"t","identifiers":{"user_id":"u","em|\xffail":"a@b.co"}}`,
		"a key in traits":      `{"id":"e","type":"t",` + ids + `,"traits":{"n|\xe3o":1}}`,
		"traits.name":          `{"id":"e","type":"t",` + ids + `,"traits":{"name":"An|\xe3"}}`,
		"traits.address.city":  `{"id":"e","type":"t",` + ids + `,"traits":{"address":{"city":"S|\xe3o Paulo"}}}`,
		"a key in properties":  `{"id":"e","type":"t",` + ids + `,"properties":{"p|\xe1gina":"/"}}`,
		"properties.url":       `{"id":"e","type":"t",` + ids + `,"properties":{"url":"/carros/|\xff"}}`,
		"context.ip":           `{"id":"e","type":"t",` + ids + `,"context":{"ip":"10.0.0.|\xff"}}`,
		"id (a \\u escape)":    `{"id":"e-|\udc00","type":"t",` + ids + `}`,
	}
	ce := map[string]string{
		"id":                     `{"specversion":"1.0","id":"c-|\xff","type":"t","source":"s","data":{` + ids + `}}`,
		"type":                   `{"specversion":"1.0","id":"c","type":"t|\xff","source":"s","data":{` + ids + `}}`,
		"source":                 `{"specversion":"1.0","id":"c","type":"t","source":"/w|\xffb","data":{` + ids + `}}`,
		"time":                   `{"specversion":"1.0","id":"c","type":"t","source":"s","time":"2026|\xff","data":{` + ids + `}}`,
		"data.identifiers.email": `{"specversion":"1.0","id":"c","type":"t","source":"s","data":{"identifiers":{"email":"nu|\xff\xfe@example.com"}}}`,
		"a key in data.traits":   `{"specversion":"1.0","id":"c","type":"t","source":"s","data":{` + ids + `,"traits":{"|\xff":1}}}`,
		"data.properties.p":      `{"specversion":"1.0","id":"c","type":"t","source":"s","data":{` + ids + `,"properties":{"p":"|\xc3"}}}`,
	}
	webhook := map[string]string{
		"lead.contact.email": `{"lead":{"id":"L-1","contact":{"email":"nu|\xff\xfe@example.com"}}}`,
		"lead.id":            `{"lead":{"id":"L-|\xff","contact":{"email":"a@b.co"}}}`,
		"lead.contact.name":  `{"lead":{"id":"L-1","contact":{"email":"a@b.co","name":"An|\xe3"}}}`,
		"lead.notes":         `{"lead":{"id":"L-1","contact":{"email":"a@b.co"},"notes":"not mapped|\xff"}}`,
	}
	type request struct {
		name, path, ctype, body string
		headers                 []string
		index                   int    // of the invalid event
		message                 string // of its error
	}
	var reqs []request
	inDoc := func(at int, field string) string { return fmt.Sprintf("invalid UTF-8 at byte %d (in %s)", at, field) }
	for field, doc := range plain {
		body, at := marked(doc)
		msg := inDoc(at, field)
		if strings.Contains(field, "escape") {
			msg = fmt.Sprintf(`invalid Unicode at byte %d (in id): \udc00 is half of a UTF-16 surrogate pair, not a character`, at)
		}
		reqs = append(reqs,
			request{name: "json " + field, path: "/v1/events", ctype: ContentJSON, body: body, message: msg},
			request{name: "json batch " + field, path: "/v1/events", ctype: ContentJSON,
				body: `[{"id":"ok","type":"t",` + ids + `},` + body + `]`, index: 1, message: msg})
	}
	for field, doc := range ce {
		body, at := marked(doc)
		reqs = append(reqs,
			request{name: "cloudevent " + field, path: "/v1/events", ctype: ContentCE, body: body, message: inDoc(at, field)},
			request{name: "cloudevents batch " + field, path: "/v1/events", ctype: ContentCEBatch, body: "[" + body + "]", message: inDoc(at, field)})
	}
	for field, doc := range webhook {
		body, at := marked(doc)
		reqs = append(reqs, request{name: "webhook " + field, path: "/v1/webhooks/crm-lead", ctype: ContentJSON, body: body,
			message: fmt.Sprintf(`mapping "crm-lead": %s`, inDoc(at, field))})
	}
	binary := []string{"ce-specversion", "1.0", "ce-id", "b-1", "ce-type", "t", "ce-source", "s"}
	data, at := marked(`{"identifiers":{"email":"nu|\xff\xfe@example.com"}}`)
	reqs = append(reqs, request{name: "binary cloudevent data", path: "/v1/events", ctype: ContentJSON, body: data, headers: binary,
		message: "CloudEvent data: " + inDoc(at, "identifiers.email")})
	for _, attr := range []string{"id", "type", "source", "time"} {
		h := append([]string{"ce-time", "2026-11-22T10:00:00Z"}, binary...)
		i := slices.Index(h, "ce-"+attr) + 1
		at := len(h[i])
		h[i] += "\xff"
		reqs = append(reqs, request{name: "binary cloudevent ce-" + attr, path: "/v1/events", ctype: ContentJSON, body: `{` + ids + `}`, headers: h,
			message: fmt.Sprintf("invalid UTF-8 at byte %d of %s", at, attr)})
	}

	var payloads [][]byte
	for _, rq := range reqs {
		t.Run(rq.name, func(t *testing.T) {
			r := e.post(t, rq.path, demoKey, rq.ctype, rq.body, rq.headers...)
			wantStatus(t, r, http.StatusBadRequest, CodeValidation)
			errs, _ := r.body["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("errors = %v, want one", r.body["errors"])
			}
			got := errs[0].(map[string]any)
			if got["index"] != float64(rq.index) || got["reason"] != intake.ReasonInvalidUTF8 || got["message"] != rq.message {
				t.Fatalf("error = %v, want index %d, reason %s, message %q", got, rq.index, intake.ReasonInvalidUTF8, rq.message)
			}
		})
		payload := rq.body
		if strings.HasPrefix(payload, `[{"id":"ok"`) {
			payload = payload[strings.Index(payload, "},")+2 : len(payload)-1]
		} else if strings.HasPrefix(payload, "[") {
			payload = payload[1 : len(payload)-1]
		}
		payloads = append(payloads, []byte(payload))
	}
	if n := len(readTopic(t, e.brokers, schemas.TopicEvents)); n != 0 {
		t.Fatalf("%d events written, want none", n)
	}
	dls := readTopic(t, e.brokers, schemas.TopicDeadLetter)
	if len(dls) != len(reqs) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(reqs))
	}
	for _, rec := range dls {
		dl, err := schemas.DecodeDeadLetter(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range payloads {
			found = found || bytes.Equal(p, dl.Payload)
		}
		if dl.Reason != intake.ReasonInvalidUTF8 || !found {
			t.Fatalf("dead letter %s %q: payload %q is not one of the bodies as sent", dl.Reason, dl.Message, dl.Payload)
		}
	}
}
