package docs_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	jsonschema "github.com/pb33f/jsonschema/v6"

	"github.com/rolodex/rolodex/docs"
	"github.com/rolodex/rolodex/docs/openapitest"
	"github.com/rolodex/rolodex/partners"
)

// The document is valid OpenAPI 3.1 (the schema of the specification, every
// $ref resolved), as a validator that implements 3.1 reads it.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	c, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateDocument(); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid OpenAPI 3.1:%v", err)
	}
	if v := c.Document().GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("openapi: %s, want 3.1.x", v)
	}
}

// The JSON the servers serve is the YAML document, value for value.
func TestOpenAPIJSONIsTheYAML(t *testing.T) {
	js, err := docs.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		t.Fatalf("OpenAPIJSON is not JSON: %v", err)
	}
	if err := yaml.Unmarshal(docs.OpenAPIYAML, &fromYAML); err != nil {
		t.Fatal(err)
	}
	// Through JSON once, so both have JSON's types.
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatalf("the YAML has a value JSON cannot hold (quote response codes): %v", err)
	}
	fromYAML = nil
	if err := json.Unmarshal(b, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Fatal("OpenAPIJSON differs from docs/openapi.yaml")
	}
}

// operation is what the checks below read of one operation.
type operation struct {
	OperationID string                 `yaml:"operationId"`
	Description string                 `yaml:"description"`
	Scope       string                 `yaml:"x-required-scope"`
	Security    *[]map[string][]string `yaml:"security"`
	RawResp     map[string]yaml.Node   `yaml:"responses"`
}

type document struct {
	Security   []map[string][]string           `yaml:"security"`
	Paths      map[string]map[string]operation `yaml:"paths"`
	Components struct {
		Responses map[string]struct {
			Content map[string]struct {
				Schema struct {
					Ref string `yaml:"$ref"`
				} `yaml:"schema"`
			} `yaml:"content"`
		} `yaml:"responses"`
	} `yaml:"components"`
}

// Every operation says who may call it and what it answers: an
// operationId; for the /v1/ API, the bearer key, the scope (x-required-scope,
// a scope of partners, repeated in the description), 401 and 403 answers,
// and errors in the Error schema; for the operations' endpoints (health,
// metrics, the document), no key.
func TestOpenAPIOperations(t *testing.T) {
	var doc document
	if err := yaml.Unmarshal(docs.OpenAPIYAML, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearerKey"] == nil {
		t.Fatalf("security: %v, want the bearer key for every operation but the public ones", doc.Security)
	}
	ids := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			name := strings.ToUpper(method) + " " + path
			t.Run(name, func(t *testing.T) {
				if op.OperationID == "" {
					t.Error("no operationId")
				} else if other, dup := ids[op.OperationID]; dup {
					t.Errorf("operationId %s is also %s's", op.OperationID, other)
				}
				ids[op.OperationID] = name
				var ok2xx bool
				for code := range op.RawResp {
					ok2xx = ok2xx || strings.HasPrefix(code, "2")
				}
				if !ok2xx {
					t.Error("no 2xx answer")
				}
				public := op.Security != nil && len(*op.Security) == 0
				if !strings.HasPrefix(path, "/v1/") {
					if !public || op.Scope != "" {
						t.Errorf("an operations endpoint needs no key: security: [] and no x-required-scope (security %v, scope %q)", op.Security, op.Scope)
					}
					return
				}
				if public {
					t.Error("a /v1/ operation needs the bearer key")
				}
				// "none": any key of the partner (fan-out subscriptions:
				// the topic's access list decides, not a scope); 401 only.
				codes := []string{"401", "403"}
				if op.Scope == "none" {
					codes = codes[:1]
					if !strings.Contains(op.Description, "Scope: none") {
						t.Errorf("the description does not say %q", "Scope: none")
					}
				} else {
					if !slices.Contains(partners.AllScopes, partners.Scope(op.Scope)) {
						t.Errorf("x-required-scope %q is not a scope of partners (%v)", op.Scope, partners.AllScopes)
					}
					if want := fmt.Sprintf("Scope: `%s`", op.Scope); !strings.Contains(op.Description, want) {
						t.Errorf("the description does not say %q", want)
					}
				}
				for _, code := range codes {
					if _, ok := op.RawResp[code]; !ok {
						t.Errorf("no %s answer", code)
					}
				}
				for code, n := range op.RawResp {
					if code[0] != '4' && code[0] != '5' {
						continue
					}
					if ref := errorSchema(&doc, &n); ref != "#/components/schemas/Error" {
						t.Errorf("%s: the body is %q, want the Error schema", code, ref)
					}
				}
			})
		}
	}
}

// errorSchema returns the $ref of the JSON schema of response n, following
// a $ref to components/responses.
func errorSchema(doc *document, n *yaml.Node) string {
	var r struct {
		Ref     string `yaml:"$ref"`
		Content map[string]struct {
			Schema struct {
				Ref string `yaml:"$ref"`
			} `yaml:"schema"`
		} `yaml:"content"`
	}
	if err := n.Decode(&r); err != nil {
		return err.Error()
	}
	if name, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
		return doc.Components.Responses[name].Content["application/json"].Schema.Ref
	}
	return r.Content["application/json"].Schema.Ref
}

// Every schema of the document (components, parameters, bodies, answers,
// headers) is a valid JSON Schema 2020-12, the dialect of OpenAPI 3.1: a
// typo such as "type: integr" fails here, which the document's own
// validation lets through (it does not look inside schemas).
func TestOpenAPISchemasAreJSONSchema(t *testing.T) {
	js, err := docs.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Every schema goes under $defs of one resource, its references
	// rewritten to point there.
	js = []byte(strings.ReplaceAll(string(js), `"#/components/schemas/`, `"#/$defs/`))
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	defs := map[string]any{}
	for name, s := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
		defs[name] = s
	}
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "schema" {
					defs[at+"/schema"] = c
					continue
				}
				walk(at+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s/%d", at, i), c)
			}
		}
	}
	walk("paths", doc["paths"])
	walk("components", map[string]any{"parameters": doc["components"].(map[string]any)["parameters"],
		"responses": doc["components"].(map[string]any)["responses"], "headers": doc["components"].(map[string]any)["headers"]})
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	const url = "https://rolodex.invalid/openapi-schemas.json"
	if err := c.AddResource(url, map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile(url); err != nil {
		t.Fatalf("a schema of docs/openapi.yaml is not JSON Schema 2020-12: %v", err)
	}
	if len(defs) < 40 {
		t.Fatalf("found %d schemas; the walk missed some", len(defs))
	}
}
