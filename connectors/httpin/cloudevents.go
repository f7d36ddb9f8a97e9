package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/rolodex/rolodex/schemas"
)

// CloudEvents 1.0 over HTTP (https://github.com/cloudevents/spec, http
// protocol binding). The CloudEvent's attributes give the event's id, type,
// source and time; its data carries the rest of our event fields
// (identifiers, traits, properties).

// Content types.
const (
	ContentJSON        = "application/json"
	ContentCE          = "application/cloudevents+json"
	ContentCEBatch     = "application/cloudevents-batch+json"
	headerCESpec       = "ce-specversion"
	cloudEventsVersion = "1.0"
)

type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              json.RawMessage `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
}

// DecodeCloudEvent decodes one structured-mode CloudEvent into an event.
func DecodeCloudEvent(b []byte) (*schemas.RawEvent, error) {
	if err := schemas.CheckJSONText(b); err != nil {
		return nil, err // before encoding/json turns it into U+FFFD
	}
	var ce cloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return nil, fmt.Errorf("not a JSON CloudEvent: %w", err)
	}
	var id string
	if len(ce.ID) > 0 {
		if err := json.Unmarshal(ce.ID, &id); err != nil {
			return nil, errors.New("CloudEvent id must be a string")
		}
	}
	if ce.DataBase64 != "" {
		return nil, errors.New("CloudEvent data_base64 is not supported; send data as a JSON object")
	}
	if ce.DataContentType != "" && !isJSON(ce.DataContentType) {
		return nil, fmt.Errorf("CloudEvent datacontenttype %q is not supported; use application/json", ce.DataContentType)
	}
	return cloudEventData(ce.SpecVersion, id, ce.Type, ce.Source, ce.Time, ce.Data)
}

// DecodeCloudEventBinary decodes a binary-mode CloudEvent: attributes in
// ce-* headers, data in the body.
func DecodeCloudEventBinary(h http.Header, body []byte) (*schemas.RawEvent, error) {
	return cloudEventData(h.Get(headerCESpec), h.Get("ce-id"), h.Get("ce-type"), h.Get("ce-source"), h.Get("ce-time"), body)
}

func cloudEventData(spec, id, typ, source, t string, data []byte) (*schemas.RawEvent, error) {
	switch {
	case spec != cloudEventsVersion:
		return nil, fmt.Errorf("CloudEvent specversion must be %q, got %q", cloudEventsVersion, spec)
	case id == "":
		return nil, errors.New("CloudEvent id is required")
	case typ == "":
		return nil, errors.New("CloudEvent type is required")
	case source == "":
		return nil, errors.New("CloudEvent source is required")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("CloudEvent data must be a JSON object with identifiers, traits and properties")
	}
	var ev schemas.RawEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("CloudEvent data: %w", err)
	}
	ev.ID, ev.Type, ev.Source, ev.Time = id, typ, source, t
	return &ev, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == ContentJSON || strings.HasSuffix(mt, "+json"))
}
