package webhooks

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/rolodex/rolodex/partners"
	"github.com/rolodex/rolodex/schemas"
)

// ValidateDelivery checks a partner's delivery (the config file's
// partners[].delivery) as config loading does: exactly one of webhook and
// kafka; a webhook's URL (absolute http or https), secret (Standard
// Webhooks: base64, optionally "whsec_"; required), per_minute (not
// negative) and timeout (a positive Go duration); the mapping (known
// source roots and lead fields, no target both a value and an object). nil
// is valid (no delivery).
func ValidateDelivery(name string, d *schemas.PartnerDelivery) error {
	_, err := compileDelivery(name, d)
	return err
}

// compiled is a partner's delivery, checked.
type compiled struct {
	kafka   bool
	target  Target // webhook: URL, Key, Timeout (Limiter set by LeadDelivery)
	perMin  int
	mapping *Mapping
}

func compileDelivery(name string, d *schemas.PartnerDelivery) (*compiled, error) {
	if d == nil {
		return nil, nil
	}
	wrap := func(err error) error { return fmt.Errorf("partner %s: delivery: %w", name, err) }
	c := &compiled{kafka: d.Kafka}
	switch {
	case d.Webhook != nil && d.Kafka:
		return nil, wrap(errors.New("set webhook or kafka: true, not both"))
	case d.Webhook == nil && !d.Kafka:
		return nil, wrap(errors.New("set webhook {url, secret} or kafka: true"))
	}
	if w := d.Webhook; w != nil {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, wrap(fmt.Errorf("webhook.url %q must be an absolute http or https URL", w.URL))
		}
		if w.Secret == "" {
			return nil, wrap(errors.New("webhook.secret is required: requests are signed the Standard Webhooks way (whsec_ and base64 of 24 to 64 random bytes)"))
		}
		key, err := partners.ParseSigningSecret(w.Secret)
		if err != nil {
			return nil, wrap(fmt.Errorf("webhook.secret: %w", err))
		}
		if w.PerMinute < 0 {
			return nil, wrap(fmt.Errorf("webhook.per_minute %d is negative (0: no limit)", w.PerMinute))
		}
		timeout := DefaultTimeout
		if w.Timeout != "" {
			if timeout, err = time.ParseDuration(w.Timeout); err != nil || timeout <= 0 {
				return nil, wrap(fmt.Errorf("webhook.timeout %q must be a positive Go duration (\"15s\")", w.Timeout))
			}
		}
		c.target = Target{URL: w.URL, Key: key, Timeout: timeout}
		c.perMin = w.PerMinute
	}
	m, err := CompileMapping(d.Mapping)
	if err != nil {
		return nil, wrap(err)
	}
	c.mapping = m
	return c, nil
}

// ValidatePartners checks the delivery of every partner.
func ValidatePartners(ps []*partners.Partner) error {
	for _, p := range ps {
		if err := ValidateDelivery(p.Name, p.Delivery); err != nil {
			return err
		}
	}
	return nil
}
