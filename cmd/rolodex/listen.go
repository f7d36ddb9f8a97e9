package main

// rolodex webhooks listen: a local receiver of signed webhooks, for trying
// fan-out (and lead delivery) in dev mode without writing one, like
// "stripe listen" or "svix listen". It checks each request the way a
// partner's receiver must (internal/stdwebhooks.Verify), dedupes by
// webhook-id, prints what it received and answers what it is told to.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rolodex/rolodex/internal/stdwebhooks"
	"github.com/rolodex/rolodex/partners"
)

// listenMaxBody bounds a request body: the out topics' max.message.bytes.
const listenMaxBody = 16 << 20

const listenUsage = `
Each request must carry a Standard Webhooks signature made with the secret
(webhook-id, webhook-timestamp within 5 minutes of this clock either way,
webhook-signature "v1,..."); one that does not verify is answered 401 and
stderr says why. A verified request prints one line on stdout:

  <webhook-id> <body as compact JSON>

and is answered --status. A webhook-id already answered 2xx prints
"<webhook-id> duplicate" and is answered 200 again (a receiver that dedupes
by webhook-id acknowledges a resend without acting twice). Any path is
accepted; only POST.

Examples:
  rolodex subscriptions create car-chosen --webhook http://127.0.0.1:8765/hooks --secret-out hook.secret
  rolodex webhooks listen --secret-file hook.secret
  rolodex webhooks listen --secret-file hook.secret --status 500   # watch the retries
  rolodex webhooks listen --secret-file hook.secret --status 410   # the subscription gets disabled
`

// cmdWebhooksListen is "rolodex webhooks listen [--addr HOST:PORT]
// (--secret whsec_... | --secret-file F) [--status CODE] [--once N]".
func cmdWebhooksListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks listen", stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8765", "where to listen (host:port; port 0 picks a free one)")
	secret := fs.String("secret", "", "the subscription's signing secret (whsec_ and base64, as its creation printed it)")
	secretFile := fs.String("secret-file", "", "read the secret from this file (subscriptions create --secret-out writes it)")
	status := fs.Int("status", http.StatusOK, "the HTTP status to answer each new verified request with (try 500 or 410)")
	once := fs.Int("once", 0, "exit after answering this many distinct webhook-ids (0: run until Ctrl-C)")
	fs.Usage = func() {
		fs.printSynopsis()
		fs.printFlags()
		fmt.Fprint(fs.Output(), listenUsage)
	}
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return err
	}
	c, _ := findCommand("webhooks listen")
	usage := func(msg string) error {
		return usageError{fmt.Sprintf("webhooks listen: %s\nusage: rolodex %s %s", msg, c.name, c.args)}
	}
	switch {
	case len(pos) > 0:
		return usage(fmt.Sprintf("unexpected argument %q", pos[0]))
	case (*secret == "") == (*secretFile == ""):
		return usage("give the signing secret: --secret whsec_... or --secret-file F (one of them)")
	case *status < 200 || *status > 599:
		return usage(fmt.Sprintf("--status %d is not an HTTP status from 200 to 599", *status))
	case *once < 0:
		return usage(fmt.Sprintf("--once %d is negative (0: run until Ctrl-C)", *once))
	}
	text := *secret
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("webhooks listen: --secret-file: %w", err)
		}
		text = strings.TrimSpace(string(b))
	}
	key, err := partners.ParseSigningSecret(text)
	if err != nil {
		return usage(fmt.Sprintf("the secret: %v", err))
	}
	l := newHookListener(key, *status, *once, stdout, stderr)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("webhooks listen: %w", err)
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "rolodex webhooks listen: on http://%s/ (any path), answering %d; Ctrl-C to stop\n", ln.Addr(), *status)
	select {
	case err := <-served:
		return fmt.Errorf("webhooks listen: %w", err)
	case <-ctx.Done():
	case <-l.done:
	}
	// Let the requests in progress (the last of --once among them) finish.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("webhooks listen: shutdown: %w", err)
	}
	return nil
}

// hookListener is the HTTP handler of webhooks listen.
type hookListener struct {
	key            []byte
	status         int
	once           int
	tolerance      time.Duration
	now            func() time.Time
	stdout, stderr io.Writer

	mu       sync.Mutex
	answered map[string]bool // webhook-id -> answered 2xx at least once
	done     chan struct{}   // closed once the once-th distinct id is answered
}

func newHookListener(key []byte, status, once int, stdout, stderr io.Writer) *hookListener {
	return &hookListener{key: key, status: status, once: once, tolerance: stdwebhooks.DefaultTolerance, now: time.Now,
		stdout: stdout, stderr: stderr, answered: map[string]bool{}, done: make(chan struct{})}
}

func (l *hookListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(stdwebhooks.HeaderID)
	refuse := func(code int, why string) {
		l.mu.Lock()
		fmt.Fprintf(l.stderr, "%d %s %s (webhook-id %q): %s\n", code, r.Method, r.URL.Path, id, why)
		l.mu.Unlock()
		http.Error(w, why, code)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, "only POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, listenMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", listenMaxBody))
		} else {
			refuse(http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return
	}
	if err := stdwebhooks.Verify(l.key, r.Header, body, l.now(), l.tolerance); err != nil {
		refuse(http.StatusUnauthorized, "signature: "+err.Error())
		return
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	accepted, seen := l.answered[id]
	if accepted {
		fmt.Fprintf(l.stdout, "%s duplicate\n", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		compact.Reset()
		compact.WriteString(strconv.Quote(string(body)))
		fmt.Fprintf(l.stderr, "webhook-id %s: the body is not JSON (%v); printed quoted\n", id, err)
	}
	fmt.Fprintf(l.stdout, "%s %s\n", id, compact.Bytes())
	ok := l.status/100 == 2
	l.answered[id] = ok
	if !ok {
		fmt.Fprintf(l.stderr, "webhook-id %s: answered %d (--status)\n", id, l.status)
	}
	w.WriteHeader(l.status)
	if !seen && l.once > 0 && len(l.answered) == l.once {
		close(l.done)
	}
}
