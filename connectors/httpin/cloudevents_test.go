package httpin

import (
	"net/http"
	"strings"
	"testing"
)

// TestDecodeCloudEventRules covers the rules the conformance vectors
// (TestCloudEventsConformance) leave out: extension value types, the JSON
// media types, data_base64, and the attributes of binary mode.
func TestDecodeCloudEventRules(t *testing.T) {
	const attrs = `"specversion":"1.0","id":"c","type":"t","source":"s"`
	const data = `"data":{"identifiers":{"user_id":"u"}}`
	structured := []struct {
		name, extra string
		wantErr     string // empty: valid
	}{
		{"integer extension", `"myext":-2147483648,"other":2147483647`, ""},
		{"boolean and string extensions", `"flag":false,"text":"x"`, ""},
		{"null extension is unset", `"myext":null`, ""},
		{"invalid name with a null value", `"MyExt":null`, `attribute name "MyExt" is invalid`},
		{"null optional attributes", `"subject":null,"time":null,"dataschema":null`, ""},
		{"fractional extension", `"myext":1.5`, `extension "myext": 1.5 is not an integer`},
		{"exponent extension", `"myext":1e3`, "1e3 is not an integer"},
		{"extension beyond 32 bits", `"myext":2147483648`, "outside the Integer range"},
		{"object extension", `"myext":{"a":1}`, "must be a string, an integer or a boolean"},
		{"array extension", `"myext":[1]`, "must be a string, an integer or a boolean"},
		{"numeric core attribute", `"subject":7`, "subject must be a string, got 7"},
		{"json subtype", `"datacontenttype":"text/json"`, ""},
		{"+json suffix with parameters", `"datacontenttype":"application/vnd.acme+json; charset=utf-8"`, ""},
		{"non-JSON data", `"datacontenttype":"text/plain"`, `datacontenttype "text/plain" is not supported`},
		{"relative dataschema", `"dataschema":"/schemas/1"`, "must be a non-empty absolute URI"},
		{"source not a URI-reference", `"source":"%zz"`, "is not a URI-reference"},
		{"time with fractions and offset", `"time":"2018-04-05T17:31:00.123-03:00"`, ""},
		{"null data_base64", `"data_base64":null`, ""},
	}
	for _, tt := range structured {
		t.Run(tt.name, func(t *testing.T) {
			// A later member replaces an earlier one of the same name.
			ev, err := DecodeCloudEvent([]byte("{" + attrs + "," + data + "," + tt.extra + "}"))
			checkDecoded(t, ev != nil, err, tt.wantErr)
		})
	}
	t.Run("every problem is named", func(t *testing.T) {
		_, err := DecodeCloudEvent([]byte(`{` + attrs + `,` + data + `,"Bad":1.5,"subject":""}`))
		for _, want := range []string{`attribute name "Bad" is invalid`, `extension "Bad": 1.5 is not an integer`, "subject must not be empty"} {
			checkDecoded(t, false, err, want)
		}
	})
	t.Run("data_base64 alone", func(t *testing.T) {
		_, err := DecodeCloudEvent([]byte(`{` + attrs + `,"data_base64":"eyJ9"}`))
		checkDecoded(t, false, err, "data_base64 is not supported")
	})
	t.Run("not an object", func(t *testing.T) {
		_, err := DecodeCloudEvent([]byte(`null`))
		checkDecoded(t, false, err, "a CloudEvent is a JSON object")
	})

	binary := []struct {
		name    string
		headers []string
		wantErr string
	}{
		{"extension", []string{"ce-myext", "x"}, ""},
		{"empty subject", []string{"ce-subject", ""}, "subject must not be empty"},
		{"punctuated extension", []string{"ce-my.ext", "x"}, `attribute name "my.ext" is invalid`},
		{"bad time", []string{"ce-time", "2018-04-05T18:31Z"}, "is not an RFC 3339 timestamp"},
		{"relative dataschema", []string{"ce-dataschema", "/s"}, "must be a non-empty absolute URI"},
		{"empty id", []string{"ce-id", ""}, "id is required"},
	}
	for _, tt := range binary {
		t.Run("binary "+tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "c", "ce-type": "t", "ce-source": "s"} {
				h.Set(k, v)
			}
			h[http.CanonicalHeaderKey(tt.headers[0])] = []string{tt.headers[1]}
			ev, err := DecodeCloudEventBinary(h, []byte(`{"identifiers":{"user_id":"u"}}`))
			checkDecoded(t, ev != nil, err, tt.wantErr)
		})
	}
}

func checkDecoded(t *testing.T, decoded bool, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil || !decoded {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("err = %v, want it to say %q", err, wantErr)
	}
}
