// Package httpin is the HTTP ingest connector: POST /v1/events (single
// events, batches, CloudEvents), POST /v1/topics/{name}/events (the same
// body, into a partner fan-out topic) and POST /v1/webhooks/{mapping} (CRM
// payloads mapped to events). A request is answered 202 only after Kafka
// acknowledged every event it carries.
package httpin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/intake"
	"github.com/rolodex/rolodex/internal/jsonscan"
	"github.com/rolodex/rolodex/internal/requestid"
	"github.com/rolodex/rolodex/normalize"
	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// Config of the HTTP ingest connector.
type Config struct {
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxBatch bounds the events of one request. Default 1000.
	MaxBatch int
	// WriteTimeout bounds the wait for Kafka's acknowledgement; past it the
	// answer is 503. Default 10s.
	WriteTimeout time.Duration
	// SignatureTolerance is how far a signature timestamp may be from now.
	// Default 5m.
	SignatureTolerance time.Duration
	// Mappings are the CRM webhook mappings by name.
	Mappings map[string]*Mapping
	// Topics are the partner fan-out topics, which POST
	// /v1/topics/{name}/events checks (the topic exists in the partner's
	// tenant and the partner owns it). Nil: that route answers 503.
	Topics intake.Topics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.SignatureTolerance == 0 {
		c.SignatureTolerance = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a config that cannot work.
func (c *Config) Validate() error {
	if c.MaxBodyBytes < 0 || c.MaxBatch < 0 || c.WriteTimeout < 0 || c.SignatureTolerance < 0 {
		return errors.New("httpin: limits and timeouts must not be negative")
	}
	for name, m := range c.Mappings {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("httpin: mapping %q: %w", name, err)
		}
	}
	return nil
}

// Server serves the ingest routes.
type Server struct {
	cfg       Config
	partners  *partners.Registry
	validator *intake.Validator
	pub       *intake.Publisher
	metrics   *intake.Metrics
	latency   *prometheus.HistogramVec
	keys      map[string][]byte // partner name -> signing key
	now       func() time.Time
}

// New returns the HTTP ingest connector. reg receives its request metrics.
func New(cfg Config, reg *partners.Registry, v *intake.Validator, pub *intake.Publisher, m *intake.Metrics, promReg prometheus.Registerer) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, partners: reg, validator: v, pub: pub, metrics: m, keys: map[string][]byte{}, now: time.Now}
	for _, p := range reg.All() {
		if k := p.SigningKey(); k != nil {
			s.keys[p.Name] = k
		}
	}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rolodex_http_request_duration_seconds",
		Help:    "Ingest HTTP request latency, by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "code"})
	if promReg != nil {
		promReg.MustRegister(s.latency)
	}
	return s, nil
}

// Mux is where Register mounts the routes: an *http.ServeMux, or a server's
// wrapper of one.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Register mounts the ingest routes on mux. Every route the servers mount
// is in the API document, docs/openapi.yaml (cmd/rolodex's route test).
func (s *Server) Register(mux Mux) {
	mux.Handle("POST /v1/events", s.instrument("/v1/events", s.handleEvents))
	mux.Handle("POST /v1/topics/{name}/events", s.instrument("/v1/topics/events", s.handleTopicEvents))
	mux.Handle("POST /v1/webhooks/{mapping}", s.instrument("/v1/webhooks", s.handleWebhook))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(route string, h func(http.ResponseWriter, *http.Request, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		reqID := requestid.New()
		sw.Header().Set(requestid.Header, reqID)
		h(sw, r, reqID)
		s.latency.WithLabelValues(route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

// admit runs the checks every ingest request passes before its body is
// parsed: method, credential, scope (events:write), rate limit, content
// type, size, signature.
// It answers the request itself and returns ok=false when a check fails.
//
// A webhook route (hook non-nil) also takes HTTP Basic credentials, the
// password being the key (providers such as Postmark and Mailgun can send
// only those), and a mapping with its own signature scheme (hook.verify)
// is verified with it instead of the partner's Standard Webhooks secret.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, reqID string, hook *Mapping, allowed ...string) (p *partners.Partner, statusOK bool, mediaType string, body []byte, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, CodeMethod, "use POST", reqID)
		return nil, false, "", nil, false
	}
	authz := r.Header.Get("Authorization")
	if hook != nil {
		if _, pass, basic := r.BasicAuth(); basic {
			authz = "Bearer " + pass
		}
	}
	pr, err := s.partners.Authenticate(authz)
	if err != nil {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, err.Error(), reqID)
		return nil, false, "", nil, false
	}
	if err := pr.Require(partners.ScopeEventsWrite); err != nil {
		writeJSON(w, http.StatusForbidden, ErrorBody{Error: CodeForbidden, Message: err.Error(), RequestID: reqID, RequiredScope: string(partners.ScopeEventsWrite)})
		return nil, false, "", nil, false
	}
	p = pr.Partner
	// Status events (tags, blacklist, consent, identifier status) need
	// profiles:write too (accept checks them once decoded).
	statusOK = pr.Require(partners.ScopeProfilesWrite) == nil
	now := s.now()
	if res := p.Limiter().ReserveN(now, 1); !res.OK() || res.DelayFrom(now) > 0 {
		retry := time.Second
		if res.OK() {
			retry = res.DelayFrom(now)
			res.CancelAt(now)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
		writeError(w, http.StatusTooManyRequests, CodeRateLimited,
			fmt.Sprintf("partner %q is limited to %g requests/s (burst %d); retry after the Retry-After seconds", p.Name, p.RateLimit.RPS, p.RateLimit.Burst), reqID)
		return nil, false, "", nil, false
	}
	mediaType, _, err = mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !contains(allowed, mediaType) {
		writeError(w, http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
			fmt.Sprintf("Content-Type %q is not accepted here; use one of %s", r.Header.Get("Content-Type"), strings.Join(allowed, ", ")), reqID)
		return nil, false, "", nil, false
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body exceeds %d bytes", s.cfg.MaxBodyBytes), reqID)
		return nil, false, "", nil, false
	}
	body, err = readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body exceeds %d bytes", s.cfg.MaxBodyBytes), reqID)
		} else {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "could not read the body: "+err.Error(), reqID)
		}
		return nil, false, "", nil, false
	}
	if hook != nil && hook.verify != nil {
		if err := hook.verify(r.Header, body, now, s.cfg.SignatureTolerance); err != nil {
			writeError(w, http.StatusForbidden, CodeBadSignature, err.Error(), reqID)
			return nil, false, "", nil, false
		}
	} else if key, signed := s.keys[p.Name]; signed {
		if err := verifySignature(key, r.Header, body, now, s.cfg.SignatureTolerance); err != nil {
			writeError(w, http.StatusForbidden, CodeBadSignature, err.Error(), reqID)
			return nil, false, "", nil, false
		}
	}
	return p, statusOK, mediaType, body, true
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free before each read, the one that
		// finds the end included: without them it would copy the whole
		// body into a buffer twice the size.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// decoded is one event of a request, decoded or not.
type decoded struct {
	raw     *schemas.RawEvent
	payload []byte
	err     *intake.Rejection
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, reqID string) {
	p, statusOK, mt, body, ok := s.admit(w, r, reqID, nil, ContentJSON, ContentCE, ContentCEBatch)
	if !ok {
		return
	}
	s.events(w, r, reqID, p, statusOK, mt, body, "")
}

// handleTopicEvents is POST /v1/topics/{name}/events: the body of
// /v1/events, every event of it published into the partner fan-out topic
// name (docs/fanout.md). The topic must exist in the partner's tenant (404)
// and the partner must own it (403); nothing is written otherwise.
func (s *Server) handleTopicEvents(w http.ResponseWriter, r *http.Request, reqID string) {
	p, statusOK, mt, body, ok := s.admit(w, r, reqID, nil, ContentJSON, ContentCE, ContentCEBatch)
	if !ok {
		return
	}
	name := r.PathValue("name")
	rej, err := intake.CheckTopic(s.cfg.Topics, p, name)
	switch {
	case err != nil:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "the topic cannot be checked yet ("+err.Error()+"); nothing was written, retry", reqID)
		return
	case rej != nil && rej.Reason == intake.ReasonNotTopicOwner:
		s.metrics.Rejected.WithLabelValues(p.Name, "http", rej.Reason).Inc()
		writeError(w, http.StatusForbidden, CodeForbidden, rej.Message+"; nothing was written", reqID)
		return
	case rej != nil:
		s.metrics.Rejected.WithLabelValues(p.Name, "http", rej.Reason).Inc()
		writeError(w, http.StatusNotFound, CodeNotFound, rej.Message+"; nothing was written", reqID)
		return
	}
	s.events(w, r, reqID, p, statusOK, mt, body, name)
}

// events decodes an admitted /v1/events body and accepts its events, each
// with the fan-out topic topic ("": none).
func (s *Server) events(w http.ResponseWriter, r *http.Request, reqID string, p *partners.Partner, statusOK bool, mt string, body []byte, topic string) {
	var items []decoded
	var err error
	switch {
	case mt == ContentCE:
		items = []decoded{cloudEventDecoder.one(body)}
	case mt == ContentCEBatch:
		items, err = s.decodeArray(body, true, cloudEventDecoder)
	case r.Header.Get(headerCESpec) != "":
		raw, derr := DecodeCloudEventBinary(r.Header, body)
		items = []decoded{{raw: raw, payload: body}}
		if derr != nil {
			items[0] = decoded{payload: body, err: intake.DecodeFailed(intake.ReasonInvalidCloudEvent, derr)}
		}
	default:
		// The events are done with once accept returns: the accepted ones
		// are schemas.Events of their own, the dead letters carry the
		// elements of body. Their maps go back to the pool then.
		buf := rawEventBuffers.Get().(*schemas.RawEventBuffer)
		defer rawEventBuffers.Put(buf)
		dec := jsonDecoder
		dec.array = buf
		items, err = s.decodeArray(body, false, dec)
	}
	if err != nil {
		status := http.StatusBadRequest
		code := CodeBadRequest
		if errors.Is(err, errTooMany) {
			status, code = http.StatusRequestEntityTooLarge, CodeTooLarge
		}
		s.metrics.Rejected.WithLabelValues(p.Name, "http", intake.ReasonInvalidJSON).Inc()
		writeError(w, status, code, err.Error(), reqID)
		return
	}
	s.accept(w, r.Context(), p, statusOK, reqID, items, false, topic)
}

func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request, reqID string) {
	name := r.PathValue("mapping")
	m, found := s.cfg.Mappings[name]
	if !found {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no webhook mapping %q is configured", name), reqID)
		return
	}
	p, statusOK, _, body, ok := s.admit(w, r, reqID, m, ContentJSON)
	if !ok {
		return
	}
	dec := decoder{decode: m.Apply, reason: intake.ReasonMapping, context: fmt.Sprintf("mapping %q: ", name)}
	items := []decoded{dec.one(body)}
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
		// A batch of payloads (SendGrid posts an array of events): each
		// element is mapped alone; the valid ones are written and each bad
		// one dead-lettered (a provider cannot fix its payload, and would
		// retry a refused batch, valid events and all, until it gives up).
		var err error
		if items, err = s.decodeArray(trimmed, false, dec); err == nil {
			err = objectsOnly(trimmed)
		}
		if err != nil {
			status, code := http.StatusBadRequest, CodeBadRequest
			if errors.Is(err, errTooMany) {
				status, code = http.StatusRequestEntityTooLarge, CodeTooLarge
			}
			s.metrics.Rejected.WithLabelValues(p.Name, "http", intake.ReasonInvalidJSON).Inc()
			writeError(w, status, code, err.Error(), reqID)
			return
		}
		s.accept(w, r.Context(), p, statusOK, reqID, items, true, "")
		return
	}
	s.accept(w, r.Context(), p, statusOK, reqID, items, false, "")
}

var errTooMany = errors.New("too many events")

// objectsOnly refuses a webhook batch with an element that is not a JSON
// object: not a provider's event but a malformed body, refused whole (the
// document says so: a batch is an array of objects).
func objectsOnly(array []byte) error {
	elems, err := jsonscan.SplitArray(array)
	if err != nil {
		return fmt.Errorf("the body is not a valid JSON array: %v", err)
	}
	for i, e := range elems {
		if e = bytes.TrimSpace(e); len(e) == 0 || e[0] != '{' {
			return fmt.Errorf("element %d of the batch is not a JSON object: a webhook batch is an array of event objects", i)
		}
	}
	return nil
}

// decodeJSONEvent decodes one event: json.Unmarshal into a RawEvent, in
// one pass for a plainly written event (schemas.DecodeRawEventJSON).
func decodeJSONEvent(b []byte) (*schemas.RawEvent, error) {
	return schemas.DecodeRawEventJSON(b)
}

// decoder decodes one event; reason labels its failures, context
// prefixes their messages.
type decoder struct {
	decode  func([]byte) (*schemas.RawEvent, error)
	reason  string
	context string
	// array, when decode is decodeJSONEvent, decodes a whole array in one
	// pass (schemas.DecodeRawEventArray), which gives the same events.
	array *schemas.RawEventBuffer
}

// rawEventBuffers hold the maps of the events of earlier requests, for
// the next ones.
var rawEventBuffers = sync.Pool{New: func() any { return new(schemas.RawEventBuffer) }}

// eventBuffers hold the memory of the validated events of earlier
// requests, for the next ones.
var eventBuffers = sync.Pool{New: func() any { return new(intake.EventBuffer) }}

var (
	jsonDecoder       = decoder{decode: decodeJSONEvent, reason: intake.ReasonInvalidJSON}
	cloudEventDecoder = decoder{decode: DecodeCloudEvent, reason: intake.ReasonInvalidCloudEvent}
)

func (d decoder) one(b []byte) decoded {
	raw, err := d.decode(b)
	if err != nil {
		if d.context != "" {
			err = fmt.Errorf("%s%w", d.context, err)
		}
		return decoded{payload: b, err: intake.DecodeFailed(d.reason, err)}
	}
	return decoded{raw: raw, payload: b}
}

// decodeArray decodes a single JSON object or an array of them. With
// arrayOnly (a CloudEvents batch), the body must be an array, and an empty
// one is a valid batch of no events (JSON batch format).
func (s *Server) decodeArray(body []byte, arrayOnly bool, dec decoder) ([]decoded, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("the body is empty; send one event object or an array of events")
	}
	if trimmed[0] != '[' {
		if arrayOnly {
			return nil, errors.New("a CloudEvents batch must be a JSON array")
		}
		if trimmed[0] != '{' {
			return nil, errors.New("the body must be one JSON event object or an array of them")
		}
		return []decoded{dec.one(trimmed)}, nil
	}
	if dec.array != nil {
		// The common case, a batch of plainly written events, in one pass.
		if events, elems, ok := dec.array.Decode(trimmed, s.cfg.MaxBatch); ok {
			out := make([]decoded, len(events))
			for i := range events {
				out[i] = decoded{raw: &events[i], payload: elems[i]}
			}
			return out, nil
		}
	}
	// The elements are slices of body, which nothing reuses: each is its
	// event's dead-letter payload as received.
	elems, err := jsonscan.SplitArray(trimmed)
	if err != nil {
		return nil, fmt.Errorf("the body is not a valid JSON array: %v", err)
	}
	if len(elems) == 0 && !arrayOnly {
		return nil, errors.New("the batch is empty")
	}
	if len(elems) > s.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: the batch has %d events, the limit is %d", errTooMany, len(elems), s.cfg.MaxBatch)
	}
	out := make([]decoded, len(elems))
	for i, e := range elems {
		out[i] = dec.one(e)
	}
	return out, nil
}

// AcceptResponse is the body of a 202 answer.
type AcceptResponse struct {
	Accepted  int          `json:"accepted"`
	RequestID string       `json:"request_id"`
	Warnings  []EventError `json:"warnings,omitempty"`
	// Rejected lists the elements of a webhook batch that were not
	// written but dead-lettered (partial acceptance: webhook routes only).
	Rejected []EventError `json:"rejected,omitempty"`
}

// accept validates every item; if any is invalid nothing is written and the
// answer lists every bad index; otherwise all events are written and the
// answer is 202 once Kafka acknowledged them.
//
// With partial (a provider's webhook batch) the valid items are written
// even if some are invalid: each invalid one is dead-lettered, and the 202
// (once Kafka acknowledged the events and the dead letters; 503 otherwise,
// so the provider retries) lists them in rejected.
//
// An event of a reserved status type (schemas.IsStatusEvent: tags, the
// blacklist, consent, identifier status) changes what a person set on a
// profile: it needs a key with profiles:write (statusOK), as the status
// API does, or the whole request is refused with 403 and nothing is
// written.
//
// topic, when set, is the partner fan-out topic every event goes into
// (already checked).
func (s *Server) accept(w http.ResponseWriter, ctx context.Context, p *partners.Partner, statusOK bool, reqID string, items []decoded, partial bool, topic string) {
	if !statusOK {
		for _, it := range items {
			if it.raw != nil && schemas.IsStatusEvent(it.raw.Type) {
				writeJSON(w, http.StatusForbidden, ErrorBody{Error: CodeForbidden, RequestID: reqID, RequiredScope: string(partners.ScopeProfilesWrite),
					Message: fmt.Sprintf("event %q is a %s event, which changes a profile's status: this key lacks the scope %s; nothing was written", it.raw.ID, it.raw.Type, partners.ScopeProfilesWrite)})
				return
			}
		}
	}
	received := s.now()
	events := make([]*schemas.Event, 0, len(items))
	// The events are done with once this returns: written (their records
	// are bytes of their own) or not. Their memory goes back to the pool.
	evBuf := eventBuffers.Get().(*intake.EventBuffer)
	defer func() {
		evBuf.Release(events)
		eventBuffers.Put(evBuf)
	}()
	var bad, warnings []EventError
	var dls []*schemas.DeadLetter
	for i, it := range items {
		rej := it.err
		var id string
		if rej == nil {
			id = it.raw.ID
			var ev *schemas.Event
			var dropped []*normalize.Error
			ev, dropped, rej = s.validator.ValidateReusing(evBuf, p, it.raw, received)
			if rej == nil {
				for _, d := range dropped {
					s.metrics.Dropped.WithLabelValues(p.Name, d.Reason).Inc()
					warnings = append(warnings, EventError{Index: i, ID: id, Reason: d.Reason, Message: "identifier dropped: " + d.Message})
				}
				ev.Topic = topic
				events = append(events, ev)
				continue
			}
		}
		bad = append(bad, EventError{Index: i, ID: id, Reason: rej.Reason, Message: rej.Message})
		s.metrics.Rejected.WithLabelValues(p.Name, "http", rej.Reason).Inc()
		dls = append(dls, intake.NewDeadLetter(received, p.Name, p.Tenant, intake.FromHTTP(reqID, i), rej, it.payload))
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	if partial && len(bad) > 0 {
		s.acceptPartial(w, wctx, p, reqID, events, warnings, bad, dls)
		return
	}
	if len(bad) > 0 {
		if err := s.pub.DeadLetters(wctx, dls); err != nil {
			s.cfg.Logger.Warn("httpin: dead letters not written", "request_id", reqID, "err", err)
		} else {
			for _, dl := range dls {
				s.metrics.DeadLetter.WithLabelValues("http", dl.Reason).Inc()
			}
		}
		msg := fmt.Sprintf("%d of %d events are invalid; nothing was written", len(bad), len(items))
		if len(items) == 1 {
			msg = "the event is invalid: " + bad[0].Message
		}
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: CodeValidation, Message: msg, RequestID: reqID, Errors: bad})
		return
	}
	if err := s.pub.Events(wctx, events); err != nil {
		s.cfg.Logger.Error("httpin: events not acknowledged", "request_id", reqID, "partner", p.Name, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable,
			"Kafka did not acknowledge the events in time; nothing is guaranteed written, retry the same request (event ids make retries safe)", reqID)
		return
	}
	s.metrics.Accepted.WithLabelValues(p.Name, "http").Add(float64(len(events)))
	writeJSON(w, http.StatusAccepted, AcceptResponse{Accepted: len(events), RequestID: reqID, Warnings: warnings})
}

// acceptPartial writes the valid events of a webhook batch and dead-letters
// the invalid ones; the answer is 202 only once Kafka acknowledged both
// (the rejected elements exist nowhere else once the provider saw a 2xx),
// else 503 and the provider retries the batch (event ids make the valid
// events' retry safe; the dead letters are written again).
func (s *Server) acceptPartial(w http.ResponseWriter, ctx context.Context, p *partners.Partner, reqID string, events []*schemas.Event, warnings, bad []EventError, dls []*schemas.DeadLetter) {
	recs := make([]*kgo.Record, 0, len(events)+len(dls))
	var err error
	for _, ev := range events {
		var r *kgo.Record
		if r, err = intake.EventRecord(ev); err != nil {
			break
		}
		recs = append(recs, r)
	}
	for _, dl := range dls {
		var r *kgo.Record
		if err != nil {
			break
		}
		if r, err = intake.DeadLetterRecord(dl); err == nil {
			recs = append(recs, r)
		}
	}
	if err == nil {
		err = s.pub.Records(ctx, recs)
	}
	if err != nil {
		s.cfg.Logger.Error("httpin: webhook batch not acknowledged", "request_id", reqID, "partner", p.Name, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable,
			"Kafka did not acknowledge the batch's events and dead letters in time; nothing is guaranteed written, retry the same request (event ids make retries safe)", reqID)
		return
	}
	for _, dl := range dls {
		s.metrics.DeadLetter.WithLabelValues("http", dl.Reason).Inc()
	}
	s.metrics.Accepted.WithLabelValues(p.Name, "http").Add(float64(len(events)))
	s.cfg.Logger.Info("httpin: webhook batch partly accepted", "request_id", reqID, "partner", p.Name, "accepted", len(events), "rejected", len(bad))
	writeJSON(w, http.StatusAccepted, AcceptResponse{Accepted: len(events), RequestID: reqID, Warnings: warnings, Rejected: bad})
}
