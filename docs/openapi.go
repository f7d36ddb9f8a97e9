// Package docs carries the API contract into the binary: openapi.yaml
// (OpenAPI 3.1), the one copy of the document. It lives here, beside the
// prose it goes with, so that docs/openapi.yaml is both what a reader opens
// and what every server serves at GET /openapi.yaml; go:embed only reads
// files of its own package's directory, hence this package. Nothing else of
// docs/ is Go.
package docs

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// OpenAPIYAML is docs/openapi.yaml as built into the binary.
//
//go:embed openapi.yaml
var OpenAPIYAML []byte

// OpenAPIJSON returns the document in JSON, its keys in the document's
// order.
func OpenAPIJSON() ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(OpenAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// writeJSON writes the YAML node n as JSON.
func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return errors.New("not one YAML document")
		}
		return writeJSON(buf, n.Content[0])
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias)
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a key that is not a scalar", k.Line)
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			key, _ := json.Marshal(k.Value)
			buf.Write(key)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(b)
	default:
		return fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	return nil
}
