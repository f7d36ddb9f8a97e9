package httpin

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
)

func fuzzValidator(f *testing.F) (*intake.Validator, *partners.Partner) {
	n, err := normalize.New(normalize.Config{})
	if err != nil {
		f.Fatal(err)
	}
	reg, err := partners.New([]partners.Partner{{Name: "p", Tenant: "t", Keys: []string{"key-key-key"}}})
	if err != nil {
		f.Fatal(err)
	}
	p, _ := reg.ByName("p")
	return intake.NewValidator(n), p
}

// FuzzDecodeEvent: whatever the bytes, decoding and validating a JSON event
// never panics, and an accepted event always has an id, a type, the
// partner's tenant and at least one identifier. Run with
// go test -fuzz FuzzDecodeEvent ./connectors/httpin/; the seeds run in the
// normal suite.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"id":"e-1","type":"page.viewed","time":"2026-11-22T10:00:00Z","source":"web","identifiers":{"email":"Ana@Example.com","phone":"+55 11 91234-5678","user_id":"u-1"},"traits":{"name":"Ana"},"properties":{"url":"/cars/42"}}`,
		`{"id":1,"type":"x","identifiers":{"phone":5511912345678,"email":["a@b.co","c@d.co"]}}`,
		`{"id":"x","type":"t","identifiers":{"external:crm":"L-1"},"traits":{"n":null}}`,
		`{"id":null,"type":5}`, `{"identifiers":[]}`, `[]`, `{`, `null`, ``, "\x00",
	} {
		f.Add([]byte(s))
	}
	v, p := fuzzValidator(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := decodeJSONEvent(b)
		if err != nil {
			return
		}
		ev, _, rej := v.Validate(p, raw, time.Now())
		if rej != nil {
			if rej.Reason == "" || rej.Message == "" {
				t.Fatalf("rejection without reason or message: %+v", rej)
			}
			return
		}
		if ev.ID == "" || ev.Type == "" || ev.Tenant != "t" || len(ev.Identifiers) == 0 {
			t.Fatalf("accepted an incomplete event: %+v", ev)
		}
		for k, val := range ev.Traits {
			if !json.Valid([]byte(val)) {
				t.Fatalf("trait %q is not JSON: %q", k, val)
			}
		}
	})
}

// FuzzDecodeCloudEvent: structured and binary CloudEvents never panic and a
// decoded one always carries the CloudEvent's id, type and source.
func FuzzDecodeCloudEvent(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"c","type":"t","source":"s","data":{"identifiers":{"user_id":"u"}}}`,
		`{"specversion":"1.0","id":"c","type":"t","source":"s","datacontenttype":"text/plain","data":"x"}`,
		`{"specversion":"1.0","id":"c","type":"t","source":"s","data_base64":"eyJ9"}`,
		`{"specversion":"0.3"}`, `{"id":7}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ev, err := DecodeCloudEvent(b); err == nil && (ev.ID == "" || ev.Type == "" || ev.Source == "") {
			t.Fatalf("decoded a CloudEvent without id/type/source: %+v", ev)
		}
		h := http.Header{}
		h.Set("ce-specversion", "1.0")
		h.Set("ce-id", "i")
		h.Set("ce-type", "t")
		h.Set("ce-source", "s")
		if ev, err := DecodeCloudEventBinary(h, b); err == nil && ev.ID != "i" {
			t.Fatalf("binary CloudEvent lost its id: %+v", ev)
		}
	})
}
