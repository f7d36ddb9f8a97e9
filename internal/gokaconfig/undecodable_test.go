package gokaconfig

import (
	"testing"

	"github.com/lovoo/goka/codec"
)

func TestTolerantCodec(t *testing.T) {
	c := Tolerant(new(codec.Int64)) // refuses what is not a decimal integer
	v, err := c.Decode([]byte("42"))
	if err != nil || v != int64(42) {
		t.Fatalf("Decode(42) = %v, %v; want 42 as the wrapped codec decodes it", v, err)
	}
	raw := []byte("not a number")
	v, err = c.Decode(raw)
	if err != nil {
		t.Fatalf("Decode of a bad value failed: %v", err)
	}
	u, ok := v.(*Undecodable)
	if !ok || u.Err == nil || string(u.Raw) != "not a number" {
		t.Fatalf("Decode of a bad value = %#v, want an *Undecodable with the error and the bytes", v)
	}
	raw[0] = 'X' // goka may reuse its buffer: the value keeps its own copy
	if string(u.Raw) != "not a number" {
		t.Fatalf("Raw shares the decoder's buffer: %q", u.Raw)
	}
	b, err := c.Encode(int64(7))
	if err != nil || string(b) != "7" {
		t.Fatalf("Encode(7) = %q, %v; want the wrapped codec's", b, err)
	}
	if _, err := c.Encode("x"); err == nil {
		t.Fatal("Encode of a wrong type: no error (must be the wrapped codec's)")
	}
}
