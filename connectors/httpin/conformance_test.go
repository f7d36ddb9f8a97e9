package httpin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// conformanceFile is a JSON-format test file of the CloudEvents conformance
// suite (testdata/cloudevents/README.md).
type conformanceFile struct {
	TestType string `json:"testType"`
	Tests    []struct {
		ID       string            `json:"id"`
		TestType string            `json:"testType"`
		Event    json.RawMessage   `json:"event"`
		Batch    []json.RawMessage `json:"batch"`
	} `json:"tests"`
}

// conformanceRejections is what the 400 answer to each invalid vector must
// say. A vector missing here fails the test, so a new one gets a message.
var conformanceRejections = map[string]string{
	"invalidNoSpecVersion":             "specversion is required",
	"invalidNoId":                      "id is required",
	"invalidNoType":                    "type is required",
	"invalidNoSource":                  "source is required",
	"invalidTimeGarbage":               `time "lunchtime" is not an RFC 3339 timestamp`,
	"invalidTimeToMinute":              `time "2018-04-05T18:31Z" is not an RFC 3339 timestamp`,
	"invalidTimeOffsetX":               `time "2018-04-05T18:31:00X" is not an RFC 3339 timestamp`,
	"invalidTimeOffsetOutOfRange":      `time "2018-04-05T18:31:00+25:00" is not an RFC 3339 timestamp`,
	"invalidTimeOffsetNonInteger":      `time "2018-04-05T18:31:00+xx:00" is not an RFC 3339 timestamp`,
	"invalidTimeOffsetHourOnly":        `time "2018-04-05T18:31:00+05" is not an RFC 3339 timestamp`,
	"invalidEmptyId":                   "id is required and must not be empty",
	"invalidEmptyType":                 "type is required and must not be empty",
	"invalidEmptySource":               "source is required and must not be empty",
	"invalidEmptySpecVersion":          `specversion must be "1.0", got ""`,
	"invalidUnknownSpecVersion":        `specversion must be "1.0", got "0.9"`,
	"invalidNonRfc2046DataContentType": `datacontenttype "xyz" is not a media type`,
	"invalidEmptyDataContentType":      `datacontenttype "" is not a media type`,
	"invalidEmptyDataSchema":           `dataschema "" must be a non-empty absolute URI`,
	"invalidEmptySubject":              "subject must not be empty",
	"invalidNumericId":                 "id must be a string, got 25",
	"invalidObjectId":                  "id must be a string",
	"invalidCapitalizedExtension":      `attribute name "MyExtension" is invalid`,
	"invalidPunctuatedExtension":       `attribute name "my.extension" is invalid`,
	"invalidNonIntegerExtensionValue":  "1.5 is not an integer",
	"invalidBothDataAndDataBase64":     "either data or data_base64, not both",
	// Batches.
	"invalidBatchMixedSpecVersions":           `specversion must be "1.0", got "0.9"`,
	"invalidBatchContainingInvalidCloudEvent": "id is required",
	"invalidBatchContainingNonObject":         "not a JSON CloudEvent",
}

// withData gives a vector's event object the JSON data of a Rolodex event,
// identified by userID, as testdata/cloudevents/README.md describes; in a
// valid vector a non-JSON datacontenttype becomes application/json, the type
// of that data. Anything but an object is returned as it is.
func withData(t *testing.T, ev json.RawMessage, userID string, valid bool) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if json.Unmarshal(ev, &m) != nil || m == nil {
		return ev
	}
	data, err := json.Marshal(map[string]any{"identifiers": map[string]string{"user_id": userID}})
	if err != nil {
		t.Fatal(err)
	}
	m["data"] = data
	if ct, ok := m["datacontenttype"]; ok && valid && string(ct) != "null" && string(ct) != `"application/json"` {
		m["datacontenttype"] = json.RawMessage(`"application/json"`)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantEvent is what a valid vector's event must be published as.
type wantEvent struct {
	id, typ, source string
	time            *time.Time // nil: the receive time
}

func vectorEvent(t *testing.T, ev json.RawMessage) wantEvent {
	t.Helper()
	var attrs struct {
		ID, Type, Source string
		Time             *string
	}
	if err := json.Unmarshal(ev, &attrs); err != nil {
		t.Fatal(err)
	}
	w := wantEvent{id: attrs.ID, typ: attrs.Type, source: attrs.Source}
	if attrs.Time != nil {
		ts, err := time.Parse(time.RFC3339Nano, *attrs.Time)
		if err != nil {
			t.Fatal(err)
		}
		ts = ts.UTC().Truncate(time.Millisecond)
		w.time = &ts
	}
	return w
}

// TestCloudEventsConformance posts every vector of the CloudEvents JSON
// format conformance suite to the handler: a valid one is answered 202 and
// each of its events published with the CloudEvent's id, type, source and
// time; an invalid one is answered 400 with the reason, and nothing of it
// is published.
func TestCloudEventsConformance(t *testing.T) {
	e := newEnv(t, Config{})
	want := map[string]wantEvent{} // by the user_id given in withData
	used := map[string]bool{}
	for _, file := range []string{"valid-events", "valid-batches", "invalid-events", "invalid-batches"} {
		raw, err := os.ReadFile(filepath.Join("testdata", "cloudevents", file+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var f conformanceFile
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(f.Tests) == 0 {
			t.Fatalf("%s has no tests", file)
		}
		for _, tc := range f.Tests {
			testType := tc.TestType
			if testType == "" {
				testType = f.TestType
			}
			t.Run(file+"/"+tc.ID, func(t *testing.T) {
				var valid, batch bool
				switch testType {
				case "ValidSingleEvent":
					valid = true
				case "ValidBatch":
					valid, batch = true, true
				case "InvalidSingleEvent":
				case "InvalidBatch":
					batch = true
				default:
					t.Fatalf("unknown testType %q", testType)
				}
				elems := []json.RawMessage{tc.Event}
				ctype := ContentCE
				if batch {
					elems, ctype = tc.Batch, ContentCEBatch
				}
				sent := make([]json.RawMessage, len(elems))
				for i, ev := range elems {
					userID := fmt.Sprintf("%s-%d", tc.ID, i)
					sent[i] = withData(t, ev, userID, valid)
					if valid {
						want[userID] = vectorEvent(t, ev)
					}
				}
				var body string
				if batch {
					b, err := json.Marshal(sent)
					if err != nil {
						t.Fatal(err)
					}
					body = string(b)
				} else {
					body = string(sent[0])
				}
				r := e.post(t, "/v1/events", demoKey, ctype, body)
				if valid {
					wantStatus(t, r, http.StatusAccepted, "")
					if r.body["accepted"] != float64(len(elems)) {
						t.Fatalf("accepted = %v, want %d", r.body["accepted"], len(elems))
					}
					return
				}
				wantStatus(t, r, http.StatusBadRequest, CodeValidation)
				fragment, ok := conformanceRejections[tc.ID]
				if !ok {
					t.Fatalf("no expected message for this vector; the answer was %v", r.body)
				}
				used[tc.ID] = true
				said := fmt.Sprint(r.body["message"])
				errs, _ := r.body["errors"].([]any)
				for _, x := range errs {
					m, _ := x.(map[string]any)
					if m["reason"] != "invalid_cloudevent" {
						t.Errorf("reason = %v, want invalid_cloudevent", m["reason"])
					}
					said += " | " + fmt.Sprint(m["message"])
				}
				if len(errs) == 0 || !strings.Contains(said, fragment) {
					t.Fatalf("answer %q does not say %q", said, fragment)
				}
			})
		}
	}
	for id := range conformanceRejections {
		if !used[id] {
			t.Errorf("expected message for %s, which no vector has", id)
		}
	}

	recs := readTopic(t, e.brokers, schemas.TopicEvents)
	if len(recs) != len(want) {
		t.Errorf("%d events published, want %d (the events of the valid vectors)", len(recs), len(want))
	}
	for _, rec := range recs {
		ev, err := schemas.DecodeEvent(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Identifiers) != 1 || ev.Identifiers[0].Type != schemas.IDUserID {
			t.Fatalf("identifiers = %v, want the user_id of withData", ev.Identifiers)
		}
		userID := ev.Identifiers[0].Value
		w, ok := want[userID]
		if !ok {
			t.Fatalf("published %s, which no valid vector sent", userID)
		}
		delete(want, userID)
		wantTime := ev.ReceivedAt
		if w.time != nil {
			wantTime = *w.time
		}
		if ev.ID != w.id || ev.Type != w.typ || ev.Source != w.source || !ev.Time.Equal(wantTime) || ev.Tenant != "demo" {
			t.Errorf("%s: published id %q type %q source %q time %v tenant %q, want %q %q %q %v demo",
				userID, ev.ID, ev.Type, ev.Source, ev.Time, ev.Tenant, w.id, w.typ, w.source, wantTime)
		}
	}
	for userID := range want {
		t.Errorf("%s was not published", userID)
	}
}
