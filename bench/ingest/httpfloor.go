package ingest

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/jsonscan"
	"github.com/rolodex/rolodex/schemas"
)

// floorPath is where the HTTP floor handler is mounted, on the ingest
// server's own mux and http.Server.
const floorPath = "/bench/http-floor"

// floorWriteTimeout bounds the wait for Kafka's acknowledgements, as
// httpin.Config.WriteTimeout's default does on the real route.
const floorWriteTimeout = 10 * time.Second

// floorKeyEncoding is the alphabet of schemas.NodeID (lowercase base32hex,
// no padding), so that the floor's keys look like the real ones.
var floorKeyEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// floorHandler is the HTTP floor: what any HTTP ingest of JSON arrays must
// do, and nothing else. It reads the whole body (the same size limit and
// read path as httpin), finds the array's elements with jsonscan.SplitArray
// (the split httpin itself falls back on: one pass, no copy, every
// element's JSON syntax checked), produces each element as it is, as one
// record to TopicRaw, through the ingest server's own producer client
// (intake.Publisher.Records: the code httpin's publisher uses, waiting for
// every acknowledgement), and answers 202. No authentication, rate limit,
// request id, metrics, decoding, validation, normalisation or Avro.
type floorHandler struct {
	pub     *intake.Publisher
	maxBody int64
	seed    maphash.Seed
}

func (h *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := floorReadBody(w, r, h.maxBody)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	elems, err := jsonscan.SplitArray(body)
	if err != nil || len(elems) == 0 {
		http.Error(w, fmt.Sprintf("not a JSON array of events (%v)", err), http.StatusBadRequest)
		return
	}
	// One allocation for the records, one for their keys, as
	// intake.Publisher.Events allocates its records.
	recs := make([]kgo.Record, len(elems))
	ptrs := make([]*kgo.Record, len(elems))
	keys := make([]byte, 0, len(elems)*schemas.NodeIDLen)
	for i, e := range elems {
		start := len(keys)
		keys = h.appendKey(keys, e)
		recs[i] = kgo.Record{Topic: TopicRaw, Key: keys[start:len(keys):len(keys)], Value: e}
		ptrs[i] = &recs[i]
	}
	ctx, cancel := context.WithTimeout(r.Context(), floorWriteTimeout)
	defer cancel()
	if err := h.pub.Records(ctx, ptrs); err != nil {
		http.Error(w, "not acknowledged: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	var out [32]byte
	_, _ = w.Write(append(strconv.AppendInt(append(out[:0], `{"accepted":`...), int64(len(elems)), 10), '}'))
}

// appendKey appends the record key of element e. The real key
// (schemas.Event.Key) is a SHA-256 of the event's primary identifier,
// which the floor does not decode; what matters to the producer is that
// keys spread over the partitions as evenly as the real ones do, so that
// batches per partition are as large, and are as long (28 bytes). A keyed
// hash of the element's bytes, in NodeID's form ("p_" and 26 base32hex
// characters of 128 bits), does both and costs less than the real key's
// SHA-256: the floor stays a floor. (Each event gets its own key where the
// real ones share a key per person; the partitioner hashes either evenly.)
func (h *floorHandler) appendKey(dst, e []byte) []byte {
	var sum [16]byte
	x := maphash.Bytes(h.seed, e)
	binary.LittleEndian.PutUint64(sum[:8], x)
	binary.LittleEndian.PutUint64(sum[8:], mix64(x))
	return floorKeyEncoding.AppendEncode(append(dst, "p_"...), sum[:])
}

// floorReadBody reads the body as httpin's readBody does: one buffer sized
// by Content-Length, behind http.MaxBytesReader.
func floorReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// mix64 is splitmix64's finaliser: the key's second 64 bits, derived from
// the first (the key needs NodeID's length, not more entropy).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
