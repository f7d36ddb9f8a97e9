package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/rolodex/rolodex/partners"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// verifyStandardWebhook checks a request the way a receiver following
// the Standard Webhooks spec does, written here from the spec and not
// with the package's own code: HMAC-SHA256 with the base64-decoded secret
// (after "whsec_") of "{webhook-id}.{webhook-timestamp}.{body}", base64,
// in a space-separated list of "v1,<sig>", timestamp within 5 minutes.
func verifyStandardWebhook(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q", ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is %s away", ts, d)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Split(h.Get("webhook-signature"), " ") {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("no signature matches in %q", h.Get("webhook-signature"))
}

// dealer is a test CRM: it answers each request by script (the last
// answer repeats), verifies every signature and records what it got.
type dealer struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	script []func(w http.ResponseWriter, r *http.Request)
	got    []received
	srv    *httptest.Server
}

type received struct {
	id   string
	body string
	at   time.Time
}

func newDealer(t *testing.T, script ...func(w http.ResponseWriter, r *http.Request)) *dealer {
	d := &dealer{t: t, secret: testSecret, script: script}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifyStandardWebhook(d.secret, r.Header, body); err != nil {
			t.Errorf("dealer: signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
			t.Errorf("dealer: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		d.mu.Lock()
		n := len(d.got)
		d.got = append(d.got, received{id: r.Header.Get("webhook-id"), body: string(body), at: time.Now()})
		answer := d.script[min(n, len(d.script)-1)]
		d.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *dealer) received() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.got...)
}

// setScript replaces the answers (the count of requests goes on).
func (d *dealer) setScript(script ...func(w http.ResponseWriter, r *http.Request)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.script = append(make([]func(http.ResponseWriter, *http.Request), len(d.got)), script...)
}

func status(code int, hdr ...string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
	}
}

// slow answers 200 after d, or gives up when the request is cancelled.
func slow(d time.Duration) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}
}

func testTarget(t *testing.T, url string) Target {
	key, err := partners.ParseSigningSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return Target{URL: url, Key: key, Timeout: 2 * time.Second}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		status int
		want   Class
	}{{200, Success}, {201, Success}, {204, Success}, {410, Gone}, {429, Retry}, {500, Retry}, {502, Retry},
		{503, Retry}, {504, Retry}, {400, Permanent}, {401, Permanent}, {404, Permanent}, {422, Permanent},
		{301, Permanent}, {100, Permanent}} {
		if got := Classify(c.status); got != c.want {
			t.Errorf("Classify(%d) = %s, want %s", c.status, got, c.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-3", 0}, {"soon", 0}, {"120", 2 * time.Minute}, {" 7 ", 7 * time.Second},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second},
		{"Saturday, 01-Mar-25 12:01:00 GMT", time.Minute},
		{"Sat Mar  1 12:00:10 2025", 10 * time.Second},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0}, // past
	} {
		if got := ParseRetryAfter(c.v, now); got != c.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", c.v, got, c.want)
		}
	}
}

func deliver(t *testing.T, s *Sender, tg Target, id string) (Report, []Attempt) {
	t.Helper()
	var as []Attempt
	rep, err := s.Deliver(context.Background(), tg, Message{ID: id, Body: []byte(`{"lead_id":"l1"}`)}, func(a Attempt) { as = append(as, a) })
	if err != nil {
		t.Fatal(err)
	}
	return rep, as
}

func TestSenderResults(t *testing.T) {
	short := []time.Duration{0, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	cases := []struct {
		name    string
		script  []func(http.ResponseWriter, *http.Request)
		timeout time.Duration
		result  Result
		tries   int
		status  int
	}{
		{"500s then success", []func(http.ResponseWriter, *http.Request){status(500), status(503), status(200)}, 0, ResultSuccess, 3, 200},
		{"410 gone", []func(http.ResponseWriter, *http.Request){status(500), status(410)}, 0, ResultGone, 2, 410},
		{"400 permanent", []func(http.ResponseWriter, *http.Request){status(400)}, 0, ResultPermanent, 1, 400},
		{"404 permanent", []func(http.ResponseWriter, *http.Request){status(404)}, 0, ResultPermanent, 1, 404},
		{"redirect permanent", []func(http.ResponseWriter, *http.Request){status(302, "Location", "/elsewhere")}, 0, ResultPermanent, 1, 302},
		{"exhausted", []func(http.ResponseWriter, *http.Request){status(502)}, 0, ResultExhausted, 4, 502},
		{"slow dealer: timeout then retry", []func(http.ResponseWriter, *http.Request){slow(2 * time.Second), status(201)}, 150 * time.Millisecond, ResultSuccess, 2, 201},
		{"slow dealer every time", []func(http.ResponseWriter, *http.Request){slow(2 * time.Second)}, 100 * time.Millisecond, ResultExhausted, 4, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDealer(t, c.script...)
			s, err := NewSender(SenderConfig{Schedule: short})
			if err != nil {
				t.Fatal(err)
			}
			tg := testTarget(t, d.srv.URL)
			if c.timeout > 0 {
				tg.Timeout = c.timeout
			}
			rep, as := deliver(t, s, tg, "l1.1")
			if rep.Result != c.result || rep.Tries != c.tries || rep.Status != c.status {
				t.Fatalf("report %+v, want %s after %d tries, status %d", rep, c.result, c.tries, c.status)
			}
			if (rep.Err == nil) != (c.result == ResultSuccess) {
				t.Fatalf("report error %v for %s", rep.Err, c.result)
			}
			if len(as) != c.tries {
				t.Fatalf("%d attempts seen, want %d", len(as), c.tries)
			}
			got := d.received()
			if c.status == 0 {
				// The slow dealer may not have read each request before it
				// was abandoned; those it got carry the one id.
				if len(got) == 0 {
					t.Fatal("the dealer got nothing")
				}
			} else if len(got) != c.tries {
				t.Fatalf("the dealer got %d requests, want %d", len(got), c.tries)
			}
			for _, r := range got {
				if r.id != "l1.1" || r.body != `{"lead_id":"l1"}` {
					t.Fatalf("request %+v: every attempt carries the same id and body", r)
				}
			}
			if c.timeout > 0 && !strings.Contains(fmt.Sprint(as[0].Err), "no answer within") {
				t.Fatalf("first attempt: %v, want a timeout", as[0].Err)
			}
		})
	}
}

func TestSenderRetryAfter(t *testing.T) {
	for _, c := range []struct {
		name  string
		value func() string
		min   time.Duration
	}{
		{"seconds", func() string { return "1" }, 900 * time.Millisecond},
		// An HTTP date has whole seconds: 2 s ahead is at least 1 s away.
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, 900 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDealer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", c.value())
				w.WriteHeader(http.StatusTooManyRequests)
			}, status(200))
			s, err := NewSender(SenderConfig{Schedule: []time.Duration{0, 10 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			rep, as := deliver(t, s, testTarget(t, d.srv.URL), "l2.1")
			if rep.Result != ResultSuccess || rep.Tries != 2 {
				t.Fatalf("report %+v", rep)
			}
			if as[0].RetryAfter < c.min {
				t.Fatalf("Retry-After read as %s", as[0].RetryAfter)
			}
			got := d.received()
			if gap := got[1].at.Sub(got[0].at); gap < c.min {
				t.Fatalf("retried after %s: the schedule's 10ms won over the longer Retry-After", gap)
			}
		})
	}
	t.Run("capped", func(t *testing.T) {
		d := newDealer(t, status(503, "Retry-After", "3600"), status(200))
		s, err := NewSender(SenderConfig{Schedule: []time.Duration{0, 10 * time.Millisecond}, MaxRetryAfter: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if rep, _ := deliver(t, s, testTarget(t, d.srv.URL), "l3.1"); rep.Result != ResultSuccess {
			t.Fatalf("report %+v", rep)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("MaxRetryAfter did not cap the wait")
		}
	})
}

func TestSenderPacing(t *testing.T) {
	d := newDealer(t, status(200))
	s, err := NewSender(SenderConfig{Schedule: []time.Duration{0}})
	if err != nil {
		t.Fatal(err)
	}
	tg := testTarget(t, d.srv.URL)
	tg.Limiter = rate.NewLimiter(rate.Every(100*time.Millisecond), 1)
	for i := range 4 {
		deliver(t, s, tg, fmt.Sprintf("p%d.1", i))
	}
	got := d.received()
	for i := 1; i < len(got); i++ {
		if gap := got[i].at.Sub(got[i-1].at); gap < 80*time.Millisecond {
			t.Fatalf("requests %d and %d %s apart, want at least 100ms", i-1, i, gap)
		}
	}
}

func TestSenderStopsWithContext(t *testing.T) {
	d := newDealer(t, status(500))
	s, err := NewSender(SenderConfig{Schedule: []time.Duration{0, time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rep, err := s.Deliver(ctx, testTarget(t, d.srv.URL), Message{ID: "x.1", Body: []byte(`{}`)}, nil)
	if err == nil || rep.Result != "" {
		t.Fatalf("Deliver = %+v, %v; want the context's error and no report", rep, err)
	}
	if _, err := NewSender(SenderConfig{Schedule: []time.Duration{0, -time.Second}}); err == nil {
		t.Fatal("a negative delay was accepted")
	}
}

// A burst to one receiver waits for the host's slots: never more than
// MaxInFlightPerHost requests in flight, and the connections are reused
// (about as many opened as slots, not one per request); every message is
// delivered, none timed out while waiting for a slot.
func TestSenderCapsInFlightPerHost(t *testing.T) {
	const slots, messages = 4, 200
	var inFlight, most, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s, err := NewSender(SenderConfig{Schedule: []time.Duration{0}, MaxInFlightPerHost: slots})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < messages; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A timeout far below the burst's length: a request whose
			// timeout ran while it waited for a slot would fail.
			rep, err := s.Deliver(context.Background(), Target{URL: srv.URL, Timeout: 500 * time.Millisecond},
				Message{ID: fmt.Sprintf("msg_%d", i), Body: []byte(`{}`)}, nil)
			if err != nil || !rep.Result.OK() {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d deliveries failed", failed.Load(), messages)
	}
	if most.Load() > slots {
		t.Fatalf("%d requests in flight at once, the cap is %d", most.Load(), slots)
	}
	if conns.Load() > 2*slots {
		t.Fatalf("%d connections opened for %d requests with %d slots: not reused", conns.Load(), messages, slots)
	}
}
