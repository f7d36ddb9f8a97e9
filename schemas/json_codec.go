package schemas

import (
	"fmt"

	json "github.com/goccy/go-json"
	"github.com/lovoo/goka"
)

// JSONCodec encodes *T (or T) as JSON and decodes into *T. It serves the
// identity stage's table, loopback and outputs. It uses goccy/go-json, a
// drop-in for encoding/json that writes the same bytes
// (TestJSONCodecMatchesEncodingJSON) and decodes the identity stage's nodes
// several times faster (BenchmarkNodeCodec); the table, loopback and
// output records stay plain JSON for every other reader.
type JSONCodec[T any] struct{}

var (
	_ goka.Codec = JSONCodec[Node]{}
	_ goka.Codec = JSONCodec[Message]{}
)

// Encode implements goka.Codec.
func (JSONCodec[T]) Encode(v any) ([]byte, error) {
	switch v.(type) {
	case *T, T:
		return json.Marshal(v)
	}
	var zero T
	return nil, fmt.Errorf("schemas: JSON codec of %T cannot encode %T", zero, v)
}

// Decode implements goka.Codec.
func (JSONCodec[T]) Decode(b []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		var zero T
		return nil, fmt.Errorf("schemas: decode %T: %w", zero, err)
	}
	return v, nil
}
