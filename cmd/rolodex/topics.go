package main

// The fan-out commands: rolodex topics create|access|list|delete and
// rolodex subscriptions create|list|delete|replay, clients of the
// /v1/topics and /v1/subscriptions API (docs/fanout.md).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// splitList is a comma-separated flag value as a list; "" is [].
func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// fanoutCommand parses a fan-out command's flags (--api, --key and those
// flags adds) and its nargs arguments; it returns the client and the
// arguments.
func fanoutCommand(name string, nargs int, args []string, stdout, stderr io.Writer, flags func(fs *flagSet)) (*apiClient, []string, error) {
	fs := newFlagSet(name, stdout, stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "base URL of the API (rolodex run api, or dev)")
	key := fs.String("key", os.Getenv("ROLODEX_KEY"), "partner bearer key (default $ROLODEX_KEY); topics need topics:write or admin")
	if flags != nil {
		flags(fs)
	}
	pos, err := fs.parseInterleaved(args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) != nargs {
		c, _ := findCommand(name)
		return nil, nil, usageError{fmt.Sprintf("usage: rolodex %s %s", c.name, c.args)}
	}
	cl, err := newAPIClient(name, *api, *key)
	return cl, pos, err
}

// callAndPrint sends one request and prints the JSON answer, indented.
func callAndPrint(ctx context.Context, cl *apiClient, method, path string, body any, stdout io.Writer) error {
	var out json.RawMessage
	if err := cl.call(ctx, method, path, body, &out); err != nil {
		return err
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", cl.cmd, err)
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// cmdTopicsCreate is "rolodex topics create NAME [--description D]
// [--allow P,...] [--requires-consent PURPOSE] [--include F,...]".
func cmdTopicsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var desc, allow, consent, include *string
	cl, pos, err := fanoutCommand("topics create", 1, args, stdout, stderr, func(fs *flagSet) {
		desc = fs.String("description", "", "what the topic carries")
		allow = fs.String("allow", "", "the partners of the tenant that may subscribe, comma-separated (the owner is not implied)")
		consent = fs.String("requires-consent", "", "a consent purpose the profile must have granted at delivery")
		include = fs.String("include", "", "profile fields each record carries, comma-separated: traits, traits.X, identifiers, identifiers.T, tags")
	})
	if err != nil {
		return err
	}
	body := map[string]any{"name": pos[0], "description": *desc, "allowed": splitList(*allow), "requires_consent": *consent, "include_profile": splitList(*include)}
	return callAndPrint(ctx, cl, http.MethodPost, "/v1/topics", body, stdout)
}

// cmdTopicsAccess is "rolodex topics access NAME --allow P,...": the
// topic's whole access list (--allow "" removes every partner).
func cmdTopicsAccess(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var allow *string
	set := false
	cl, pos, err := fanoutCommand("topics access", 1, args, stdout, stderr, func(fs *flagSet) {
		allow = fs.String("allow", "", `the topic's whole access list, comma-separated ("" removes every partner); required`)
	})
	if err != nil {
		return err
	}
	for _, a := range args {
		set = set || a == "--allow" || a == "-allow" || strings.HasPrefix(a, "--allow=") || strings.HasPrefix(a, "-allow=")
	}
	if !set {
		return usageError{`topics access: --allow is required (the whole list; --allow "" removes every partner)`}
	}
	return callAndPrint(ctx, cl, http.MethodPut, "/v1/topics/"+url.PathEscape(pos[0])+"/access", map[string]any{"allowed": splitList(*allow)}, stdout)
}

// cmdTopicsList is "rolodex topics list": owned and readable topics.
func cmdTopicsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl, _, err := fanoutCommand("topics list", 0, args, stdout, stderr, nil)
	if err != nil {
		return err
	}
	return callAndPrint(ctx, cl, http.MethodGet, "/v1/topics", nil, stdout)
}

// cmdTopicsDelete is "rolodex topics delete NAME".
func cmdTopicsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl, pos, err := fanoutCommand("topics delete", 1, args, stdout, stderr, nil)
	if err != nil {
		return err
	}
	return callAndPrint(ctx, cl, http.MethodDelete, "/v1/topics/"+url.PathEscape(pos[0]), nil, stdout)
}

// cmdSubscriptionsCreate is "rolodex subscriptions create TOPIC (--kafka |
// --webhook URL) [--secret-out F] [--idempotency-key K]": prints the
// subscription with its signing secret, which no later answer shows, and
// with --secret-out also writes the secret to a file (for rolodex webhooks
// listen --secret-file). It sends an Idempotency-Key (K, or one drawn for
// the run) and tries again while Kafka did not acknowledge or the answer
// was lost, so a first try that landed after all is what the answer shows
// (docs/fanout.md, "Subscriptions", for what is not covered).
func cmdSubscriptionsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var kafka *bool
	var hook, secretOut, idem *string
	cl, pos, err := fanoutCommand("subscriptions create", 1, args, stdout, stderr, func(fs *flagSet) {
		kafka = fs.Bool("kafka", false, "deliver on the partner's Kafka topic rolodex.out.<partner>")
		hook = fs.String("webhook", "", "deliver to this URL (signed, Standard Webhooks)")
		secretOut = fs.String("secret-out", "", "also write the signing secret to this file (mode 0600; replaced if it exists)")
		idem = fs.String("idempotency-key", "", "the request's Idempotency-Key (default: one drawn for this run); the same key again answers with the subscription it made")
	})
	if err != nil {
		return err
	}
	if *idem == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		*idem = "cli-" + hex.EncodeToString(b)
	}
	body := map[string]any{"topic": pos[0]}
	if *kafka {
		body["kafka"] = true
	}
	if *hook != "" {
		body["webhook"] = map[string]string{"url": *hook}
	}
	var out json.RawMessage
	unsure := false // an earlier try may have made the subscription
	for try := 1; ; try++ {
		err := cl.callWith(ctx, http.MethodPost, "/v1/subscriptions", map[string]string{"Idempotency-Key": *idem}, body, &out)
		if err == nil {
			break
		}
		// Kafka did not acknowledge in time, or the answer was lost: the
		// try may have landed, and the same key finds it. A request never
		// sent (no connection) made nothing.
		var ae *apiError
		var te *transportError
		switch {
		case errors.As(err, &te) && te.sent && ctx.Err() != nil: // interrupted
			return fmt.Errorf("%w; it may have been made: try again with --idempotency-key %s", err, *idem)
		case errors.As(err, &te) && te.sent:
			unsure = true
		case errors.As(err, &ae) && (ae.status == http.StatusServiceUnavailable && ae.body.Error == "kafka_unavailable" ||
			ae.status == http.StatusBadGateway || ae.status == http.StatusGatewayTimeout):
			unsure = true
		default:
			if unsure {
				return fmt.Errorf("%w; an earlier try may have made it: try again with --idempotency-key %s", err, *idem)
			}
			return err
		}
		if try == subscribeTries {
			return fmt.Errorf("%w; it may have been made: try again with --idempotency-key %s", err, *idem)
		}
		fmt.Fprintf(stderr, "%v; trying again in %s (--idempotency-key %s)\n", err, subscribeRetryWait, *idem)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w; it may have been made: try again with --idempotency-key %s", cl.cmd, ctx.Err(), *idem)
		case <-time.After(subscribeRetryWait):
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", cl.cmd, err)
	}
	fmt.Fprintln(stdout, string(b))
	if *secretOut != "" {
		var sub struct {
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(out, &sub); err != nil || sub.Secret == "" {
			return fmt.Errorf("%s: --secret-out: the answer has no secret (%v); the subscription was made: delete it and make a new one", cl.cmd, err)
		}
		if err := writeSecret(*secretOut, sub.Secret); err != nil {
			return fmt.Errorf("%s: --secret-out: %w (the secret is in the answer above)", cl.cmd, err)
		}
		fmt.Fprintf(stderr, "the signing secret is in %s (rolodex webhooks listen --secret-file %s); it is shown this once\n", *secretOut, *secretOut)
		return nil
	}
	fmt.Fprintln(stderr, "keep the secret: it is shown this once (a lost secret means a new subscription)")
	return nil
}

// subscribeTries and subscribeRetryWait: how often and how far apart
// subscriptions create sends its request while Kafka does not acknowledge
// or the answer is lost. The wait is the API's default write timeout
// (http.write_timeout, 10 s): a first try still in flight by then has
// landed or failed in all but a Kafka outage, and the retry finds it.
var (
	subscribeTries     = 3
	subscribeRetryWait = 10 * time.Second
)

// writeSecret writes a secret to path, readable by its owner only (an
// existing file is truncated and made 0600 too).
func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := io.WriteString(f, secret+"\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cmdSubscriptionsList is "rolodex subscriptions list".
func cmdSubscriptionsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl, _, err := fanoutCommand("subscriptions list", 0, args, stdout, stderr, nil)
	if err != nil {
		return err
	}
	return callAndPrint(ctx, cl, http.MethodGet, "/v1/subscriptions", nil, stdout)
}

// cmdSubscriptionsDelete is "rolodex subscriptions delete ID".
func cmdSubscriptionsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl, pos, err := fanoutCommand("subscriptions delete", 1, args, stdout, stderr, nil)
	if err != nil {
		return err
	}
	return callAndPrint(ctx, cl, http.MethodDelete, "/v1/subscriptions/"+url.PathEscape(pos[0]), nil, stdout)
}

// cmdSubscriptionsReplay is "rolodex subscriptions replay ID --since
// RFC3339".
func cmdSubscriptionsReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var since *string
	cl, pos, err := fanoutCommand("subscriptions replay", 1, args, stdout, stderr, func(fs *flagSet) {
		since = fs.String("since", "", "deliver the topic's events again from this instant (RFC 3339); required")
	})
	if err != nil {
		return err
	}
	if *since == "" {
		return usageError{"subscriptions replay: --since is required (RFC 3339, 2026-12-01T00:00:00Z)"}
	}
	return callAndPrint(ctx, cl, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(pos[0])+"/replay", map[string]any{"since": *since}, stdout)
}
