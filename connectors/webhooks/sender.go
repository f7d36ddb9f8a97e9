// Package webhooks sends Rolodex's outbound webhooks: signed the Standard
// Webhooks way (https://www.standardwebhooks.com), retried on a schedule,
// paced per receiver; and delivers routed leads to partners' CRMs
// (LeadDelivery, docs/routing.md "Delivery"). It uses franz-go, never
// goka, so the partner fan-out can reuse it.
//
// Start with Sender (one message to one receiver, every attempt), then
// LeadDelivery (the two consumer groups around it), then mapping.go (the
// bodies).
package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rolodex/rolodex/internal/stdwebhooks"
)

// SvixSchedule is the library's default retry schedule, Svix's: the
// delay before each attempt (the first immediately), eight attempts over
// about 28 hours.
var SvixSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DefaultTimeout is a request's timeout when the target sets none.
const DefaultTimeout = 15 * time.Second

// DefaultMaxRetryAfter bounds how long a Retry-After may delay the next
// attempt: a receiver answering "Retry-After: 86400" does not stop its
// queue for a day.
const DefaultMaxRetryAfter = time.Hour

// Class is what one attempt's answer means.
type Class string

// Classes of an attempt.
const (
	// Success: a 2xx answer.
	Success Class = "success"
	// Gone: 410, the receiver is gone for good (the fan-out disables the
	// subscription on it).
	Gone Class = "gone"
	// Permanent: any other 4xx but 429 (the request itself is refused;
	// sending it again cannot help).
	Permanent Class = "permanent"
	// Retry: 5xx, 429, a timeout or a connection error.
	Retry Class = "retry"
)

// Result is how a whole delivery (every attempt) ended.
type Result string

// Results of a delivery.
const (
	ResultSuccess   Result = "success"
	ResultGone      Result = "gone"
	ResultPermanent Result = "permanent"
	// ResultExhausted: every attempt of the schedule failed and could be
	// retried.
	ResultExhausted Result = "exhausted"
)

// OK reports a delivered message.
func (r Result) OK() bool { return r == ResultSuccess }

// Target is a receiver.
type Target struct {
	URL string
	// Key is the HMAC key (partners.ParseSigningSecret of the secret); nil
	// sends unsigned requests.
	Key []byte
	// Timeout of one request; 0: DefaultTimeout.
	Timeout time.Duration
	// Limiter paces the requests to this receiver (retries included):
	// each waits for a token, none is dropped. nil: no limit.
	Limiter *rate.Limiter
	// Header is added to every request (after Content-Type, before the
	// signature headers, which it cannot replace).
	Header http.Header
}

// Message is one message to deliver.
type Message struct {
	// ID is the webhook-id: the same for every attempt and every resend
	// of this message (receivers dedupe by it).
	ID   string
	Body []byte
}

// Attempt is the outcome of one request.
type Attempt struct {
	N      int // from 1
	Class  Class
	Status int // 0: no answer
	Err    error
	// RetryAfter is the answer's Retry-After (429, 503), 0 when absent.
	RetryAfter time.Duration
	Latency    time.Duration
}

// Report is the outcome of a delivery.
type Report struct {
	Result Result
	// Tries counts the requests made.
	Tries int
	// Status is the last answer's HTTP status (0: none).
	Status int
	// Err says why the last attempt failed (nil on success).
	Err error
}

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Schedule is the delay before each attempt; its length is the number
	// of attempts. Default SvixSchedule.
	Schedule []time.Duration
	// HTTPClient sends the requests. Default: a client without a timeout
	// of its own (each request has its Target's) that does not follow
	// redirects (a 3xx is a permanent failure: a webhook URL that moved
	// is configured again, not followed with a signed body).
	HTTPClient *http.Client
	// MaxRetryAfter caps a Retry-After. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// UserAgent of the requests. Default "rolodex-webhooks".
	UserAgent string
	// Now is the clock of the signatures' timestamps. Default time.Now.
	Now func() time.Time
	// MaxInFlightPerHost bounds the requests in flight to one host (a
	// URL's host:port), retries included; a request waits for a slot
	// before its timeout starts. It keeps a burst to one receiver from
	// opening a connection per request (the fan-out benchmark ran out of
	// file descriptors at 40,000 records), and the default client keeps as
	// many idle connections per host for reuse. Default
	// DefaultMaxInFlightPerHost.
	MaxInFlightPerHost int
}

// DefaultMaxInFlightPerHost is SenderConfig.MaxInFlightPerHost's default.
const DefaultMaxInFlightPerHost = 64

// Validate reports a config that cannot work.
func (c *SenderConfig) Validate() error {
	for i, d := range c.Schedule {
		if d < 0 {
			return fmt.Errorf("webhooks: retry schedule: delay %d (%s) is negative", i+1, d)
		}
	}
	if c.MaxRetryAfter < 0 {
		return errors.New("webhooks: MaxRetryAfter is negative")
	}
	if c.MaxInFlightPerHost < 0 {
		return errors.New("webhooks: MaxInFlightPerHost is negative")
	}
	return nil
}

func (c *SenderConfig) setDefaults() {
	if len(c.Schedule) == 0 {
		c.Schedule = SvixSchedule
	}
	if c.MaxInFlightPerHost == 0 {
		c.MaxInFlightPerHost = DefaultMaxInFlightPerHost
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.MaxInFlightPerHost
		tr.MaxIdleConns = 0 // no limit over all hosts; each is bounded above
		c.HTTPClient = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.UserAgent == "" {
		c.UserAgent = "rolodex-webhooks"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sender delivers messages. It is safe for concurrent use.
type Sender struct {
	cfg SenderConfig

	mu    sync.Mutex
	slots map[string]chan struct{} // per host: MaxInFlightPerHost slots
}

// NewSender returns a Sender.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Sender{cfg: cfg, slots: map[string]chan struct{}{}}, nil
}

// Schedule returns the retry schedule in force.
func (s *Sender) Schedule() []time.Duration { return s.cfg.Schedule }

// Deliver sends m to t until an attempt succeeds, fails for good, or the
// schedule is exhausted; onAttempt (optional) sees every attempt. The
// delay before attempt n is the schedule's, or the previous answer's
// Retry-After when that is longer (capped by MaxRetryAfter). When ctx is
// done Deliver returns ctx's error and no report: the message was not
// delivered as far as anyone knows, and its owner sends it again later
// (with the same ID).
func (s *Sender) Deliver(ctx context.Context, t Target, m Message, onAttempt func(Attempt)) (Report, error) {
	return s.DeliverChecked(ctx, t, m, nil, onAttempt)
}

// DeliverChecked is Deliver with a check before each attempt (after its
// delay and its rate token, right before the request; n from 1): when
// before returns an error, the delivery stops there and DeliverChecked
// returns that error with the report of the attempts made so far.
func (s *Sender) DeliverChecked(ctx context.Context, t Target, m Message, before func(n int) error, onAttempt func(Attempt)) (Report, error) {
	var last Attempt
	for i, delay := range s.cfg.Schedule {
		if i > 0 && last.RetryAfter > delay {
			delay = min(last.RetryAfter, s.cfg.MaxRetryAfter)
		}
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return Report{}, ctx.Err()
			case <-timer.C:
			}
		}
		if t.Limiter != nil {
			if err := t.Limiter.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return Report{}, ctx.Err()
				}
				return Report{}, fmt.Errorf("webhooks: rate limiter: %w", err)
			}
		}
		if before != nil {
			if err := before(i + 1); err != nil {
				return Report{Tries: i, Status: last.Status, Err: last.Err}, err
			}
		}
		last = s.Attempt(ctx, t, m)
		last.N = i + 1
		if ctx.Err() != nil {
			return Report{}, ctx.Err()
		}
		if onAttempt != nil {
			onAttempt(last)
		}
		rep := Report{Tries: i + 1, Status: last.Status, Err: last.Err}
		switch last.Class {
		case Success:
			rep.Result = ResultSuccess
			return rep, nil
		case Gone:
			rep.Result = ResultGone
			return rep, nil
		case Permanent:
			rep.Result = ResultPermanent
			return rep, nil
		}
	}
	return Report{Result: ResultExhausted, Tries: len(s.cfg.Schedule), Status: last.Status, Err: last.Err}, nil
}

// slot waits for one of the host's in-flight slots; release gives it
// back. An error is ctx's.
func (s *Sender) slot(ctx context.Context, rawURL string) (release func(), err error) {
	host := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		host = u.Host
	}
	s.mu.Lock()
	ch, ok := s.slots[host]
	if !ok {
		ch = make(chan struct{}, s.cfg.MaxInFlightPerHost)
		s.slots[host] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Attempt makes one signed request and classifies its answer. It first
// waits for a slot of the target's host (MaxInFlightPerHost); its
// timeout starts once it has one.
func (s *Sender) Attempt(ctx context.Context, t Target, m Message) Attempt {
	release, err := s.slot(ctx, t.URL)
	if err != nil {
		return Attempt{Class: Retry, Err: fmt.Errorf("webhooks: %w", err)}
	}
	defer release()
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, t.URL, bytes.NewReader(m.Body))
	if err != nil {
		return Attempt{Class: Permanent, Err: fmt.Errorf("webhooks: request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	for k, vs := range t.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	now := s.cfg.Now()
	req.Header.Set(stdwebhooks.HeaderID, m.ID)
	req.Header.Set(stdwebhooks.HeaderTimestamp, stdwebhooks.Timestamp(now))
	if t.Key != nil {
		req.Header.Set(stdwebhooks.HeaderSignature, stdwebhooks.Sign(t.Key, m.ID, now, m.Body))
	}
	start := time.Now()
	resp, err := s.cfg.HTTPClient.Do(req)
	a := Attempt{Latency: time.Since(start)}
	if err != nil {
		a.Class = Retry
		if rctx.Err() != nil && ctx.Err() == nil {
			a.Err = fmt.Errorf("webhooks: no answer within %s", timeout)
		} else {
			a.Err = fmt.Errorf("webhooks: %w", err)
		}
		return a
	}
	// Read a little of the body, so the connection can be reused and the
	// error can say what the receiver said.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.Latency = time.Since(start)
	a.Status = resp.StatusCode
	a.Class = Classify(resp.StatusCode)
	if a.Class != Success {
		a.Err = fmt.Errorf("webhooks: %s answered %d %s", t.URL, resp.StatusCode, strings.TrimSpace(string(snippet)))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		a.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return a
}

// Classify classes an HTTP status: 2xx Success; 410 Gone; 429 and 5xx
// Retry; anything else (other 4xx, 1xx, 3xx) Permanent.
func Classify(status int) Class {
	switch {
	case status >= 200 && status < 300:
		return Success
	case status == http.StatusGone:
		return Gone
	case status == http.StatusTooManyRequests, status >= 500:
		return Retry
	default:
		return Permanent
	}
}

// ParseRetryAfter reads a Retry-After value (RFC 9110, 10.2.3): seconds,
// or an HTTP date (its distance from now). Absent, unreadable or past: 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
