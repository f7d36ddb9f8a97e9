// Package openapitest checks HTTP answers against the API document,
// docs/openapi.yaml, in tests: a test that sends a request can require
// that the answer is one the document declares (status, content type,
// headers, body schema). It uses libopenapi-validator, which implements
// OpenAPI 3.1 (JSON Schema 2020-12).
package openapitest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/rolodex/rolodex/docs"
)

// Contract is the API document, ready to check answers with.
type Contract struct {
	doc libopenapi.Document
	v   validator.Validator
}

// Load reads the document built into the binary (docs.OpenAPIYAML).
func Load() (*Contract, error) {
	doc, err := libopenapi.NewDocument(docs.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", errors.Join(errs...))
	}
	return &Contract{doc: doc, v: v}, nil
}

// Document returns the parsed document.
func (c *Contract) Document() libopenapi.Document { return c.doc }

// ValidateDocument checks the document against the OpenAPI 3.1 schema.
func (c *Contract) ValidateDocument() error {
	if ok, verrs := c.v.ValidateDocument(); !ok {
		return describe(verrs)
	}
	return nil
}

// CheckResponse returns an error describing how the answer res, whose body
// was read into body, departs from what the document declares for req.
func (c *Contract) CheckResponse(req *http.Request, res *http.Response, body []byte) error {
	res.Body = io.NopCloser(bytes.NewReader(body))
	defer func() { res.Body = io.NopCloser(bytes.NewReader(body)) }()
	if ok, verrs := c.v.ValidateHttpResponse(req, res); !ok {
		return fmt.Errorf("%s %s answered %d %s: %w", req.Method, req.URL.Path, res.StatusCode, body, describe(verrs))
	}
	return nil
}

func describe(verrs []*verrors.ValidationError) error {
	var b strings.Builder
	for _, e := range verrs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s (%s): %s", se.FieldPath, se.KeywordLocation, se.Reason)
		}
		if e.SpecLine > 0 {
			fmt.Fprintf(&b, " (docs/openapi.yaml line %d)", e.SpecLine)
		}
	}
	if b.Len() == 0 {
		return errors.New("invalid (no detail)")
	}
	return errors.New(b.String())
}
