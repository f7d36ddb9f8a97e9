package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// avroNode is a compiled Avro schema used to check that binary data is a
// well-formed encoding before goavro decodes it. goavro sizes its arrays and
// maps from the block counts it reads, unchecked, so garbage data can make it
// allocate without bound; the check walks the data without allocating and
// rejects any block count larger than the bytes left (every array item and
// map entry in Rolodex's schemas takes at least one byte), truncated data,
// bad union indexes, overlong varints and trailing bytes.
type avroNode struct {
	kind     avroKind
	fields   []*avroNode // record
	elem     *avroNode   // array items, map values
	branches []*avroNode // union
	symbols  int64       // enum
	size     int         // fixed
}

type avroKind uint8

const (
	avroNull avroKind = iota
	avroBoolean
	avroInt
	avroLong
	avroFloat
	avroDouble
	avroBytes
	avroString
	avroRecord
	avroEnum
	avroArray
	avroMap
	avroUnion
	avroFixed
)

// avroMaxDepth bounds nesting while checking, against recursive schemas.
const avroMaxDepth = 64

var (
	errAvroShort      = errors.New("truncated Avro data")
	errAvroVarint     = errors.New("malformed Avro varint")
	errAvroTrailing   = errors.New("trailing bytes after Avro record")
	errAvroTooDeep    = errors.New("Avro data nested too deeply")
	errAvroBadCount   = errors.New("bad Avro block count")
	errAvroBadLength  = errors.New("bad Avro length")
	errAvroBadUnion   = errors.New("bad Avro union index")
	errAvroBadEnum    = errors.New("bad Avro enum index")
	errAvroBadBoolean = errors.New("bad Avro boolean")
	errAvroIntRange   = errors.New("Avro int out of range")
)

// compileAvroCheck compiles the schema JSON text into a checker.
func compileAvroCheck(avsc string) (*avroNode, error) {
	var schema any
	if err := json.Unmarshal([]byte(avsc), &schema); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	c := avroCheckCompiler{named: map[string]*avroNode{}}
	return c.compile(schema, "")
}

type avroCheckCompiler struct {
	named map[string]*avroNode
}

var avroPrimitives = map[string]avroKind{
	"null": avroNull, "boolean": avroBoolean, "int": avroInt, "long": avroLong,
	"float": avroFloat, "double": avroDouble, "bytes": avroBytes, "string": avroString,
}

func (c *avroCheckCompiler) compile(schema any, namespace string) (*avroNode, error) {
	switch s := schema.(type) {
	case string:
		if k, ok := avroPrimitives[s]; ok {
			return &avroNode{kind: k}, nil
		}
		if n, ok := c.named[fullAvroName(s, namespace)]; ok {
			return n, nil
		}
		if n, ok := c.named[s]; ok {
			return n, nil
		}
		return nil, fmt.Errorf("unknown type %q", s)
	case []any:
		n := &avroNode{kind: avroUnion}
		for _, b := range s {
			bn, err := c.compile(b, namespace)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, bn)
		}
		return n, nil
	case map[string]any:
		return c.compileObject(s, namespace)
	}
	return nil, fmt.Errorf("bad schema %v", schema)
}

func (c *avroCheckCompiler) compileObject(s map[string]any, namespace string) (*avroNode, error) {
	typ, _ := s["type"].(string)
	if k, ok := avroPrimitives[typ]; ok {
		return &avroNode{kind: k}, nil // logical types check as their base type
	}
	switch typ {
	case "record", "error", "enum", "fixed":
		name, _ := s["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("%s without a name", typ)
		}
		if ns, ok := s["namespace"].(string); ok && !strings.Contains(name, ".") {
			namespace = ns
		}
		full := fullAvroName(name, namespace)
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			namespace = full[:i]
		}
		n := &avroNode{}
		c.named[full] = n // before the fields, for recursive types
		switch typ {
		case "enum":
			syms, _ := s["symbols"].([]any)
			n.kind, n.symbols = avroEnum, int64(len(syms))
		case "fixed":
			size, ok := s["size"].(float64)
			if !ok || size < 0 {
				return nil, fmt.Errorf("fixed %s without a size", full)
			}
			n.kind, n.size = avroFixed, int(size)
		default:
			n.kind = avroRecord
			fields, _ := s["fields"].([]any)
			for _, f := range fields {
				fm, ok := f.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("record %s: bad field %v", full, f)
				}
				fn, err := c.compile(fm["type"], namespace)
				if err != nil {
					return nil, fmt.Errorf("record %s field %v: %w", full, fm["name"], err)
				}
				n.fields = append(n.fields, fn)
			}
		}
		return n, nil
	case "array", "map":
		key := "items"
		n := &avroNode{kind: avroArray}
		if typ == "map" {
			key, n.kind = "values", avroMap
		}
		elem, err := c.compile(s[key], namespace)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		n.elem = elem
		return n, nil
	}
	if t, ok := s["type"]; ok {
		// {"type": "Name"} or {"type": {...}}
		return c.compile(t, namespace)
	}
	return nil, fmt.Errorf("bad schema %v", s)
}

func fullAvroName(name, namespace string) string {
	if namespace == "" || strings.Contains(name, ".") {
		return name
	}
	return namespace + "." + name
}

// validate checks that data is exactly one encoding of the schema.
func (n *avroNode) validate(data []byte) error {
	rest, err := n.skip(data, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d", errAvroTrailing, len(rest))
	}
	return nil
}

func (n *avroNode) skip(b []byte, depth int) ([]byte, error) {
	if depth > avroMaxDepth {
		return nil, errAvroTooDeep
	}
	switch n.kind {
	case avroNull:
		return b, nil
	case avroBoolean:
		if len(b) < 1 {
			return nil, errAvroShort
		}
		if b[0] > 1 {
			return nil, errAvroBadBoolean
		}
		return b[1:], nil
	case avroInt:
		v, rest, err := readAvroLong(b)
		if err != nil {
			return nil, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, errAvroIntRange
		}
		return rest, nil
	case avroLong:
		_, rest, err := readAvroLong(b)
		return rest, err
	case avroFloat:
		return skipAvroFixed(b, 4)
	case avroDouble:
		return skipAvroFixed(b, 8)
	case avroFixed:
		return skipAvroFixed(b, n.size)
	case avroBytes, avroString:
		return skipAvroBytes(b)
	case avroEnum:
		v, rest, err := readAvroLong(b)
		if err != nil {
			return nil, err
		}
		if v < 0 || v >= n.symbols {
			return nil, errAvroBadEnum
		}
		return rest, nil
	case avroUnion:
		v, rest, err := readAvroLong(b)
		if err != nil {
			return nil, err
		}
		if v < 0 || v >= int64(len(n.branches)) {
			return nil, fmt.Errorf("%w: %d", errAvroBadUnion, v)
		}
		return n.branches[v].skip(rest, depth+1)
	case avroRecord:
		var err error
		for _, f := range n.fields {
			if b, err = f.skip(b, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case avroArray, avroMap:
		for {
			count, rest, err := readAvroLong(b)
			if err != nil {
				return nil, err
			}
			b = rest
			if count == 0 {
				return b, nil
			}
			if count < 0 {
				if count == math.MinInt64 {
					return nil, errAvroBadCount
				}
				count = -count
				var size int64
				if size, b, err = readAvroLong(b); err != nil {
					return nil, err
				}
				if size < 0 || size > int64(len(b)) {
					return nil, fmt.Errorf("%w: block size %d", errAvroBadCount, size)
				}
			}
			// Every item takes at least one byte in our schemas.
			if count > int64(len(b)) {
				return nil, fmt.Errorf("%w: %d items in %d bytes", errAvroBadCount, count, len(b))
			}
			for i := int64(0); i < count; i++ {
				if n.kind == avroMap {
					if b, err = skipAvroBytes(b); err != nil {
						return nil, err
					}
				}
				if b, err = n.elem.skip(b, depth+1); err != nil {
					return nil, err
				}
			}
		}
	}
	return nil, fmt.Errorf("unknown Avro kind %d", n.kind)
}

func skipAvroFixed(b []byte, size int) ([]byte, error) {
	if len(b) < size {
		return nil, errAvroShort
	}
	return b[size:], nil
}

func skipAvroBytes(b []byte) ([]byte, error) {
	size, rest, err := readAvroLong(b)
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: %d", errAvroBadLength, size)
	}
	if size > int64(len(rest)) {
		return nil, errAvroShort
	}
	return rest[size:], nil
}

// readAvroLong reads a zig-zag varint of at most 10 bytes.
func readAvroLong(b []byte) (int64, []byte, error) {
	var v uint64
	var shift uint
	for i := 0; i < len(b); i++ {
		if i == 10 {
			return 0, nil, errAvroVarint
		}
		c := b[i]
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1), b[i+1:], nil
		}
		shift += 7
	}
	return 0, nil, errAvroShort
}
