package identity

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/rolodex/rolodex/bench/measure"
	identityproc "github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/schemas"
)

// runIdentity runs the identity processor over the n stored events, from
// the oldest offset with empty storage, until it has settled (see
// settle), then stops it and inspects its table (calling fn, if not nil,
// for every node).
func (b *bench) runIdentity(ctx context.Context, n int, fn func(key string, node *schemas.Node)) (IdentityPhase, error) {
	var ph IdentityPhase
	dir := b.cfg.StorageDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "rolodex-benchidentity-")
		if err != nil {
			return ph, fmt.Errorf("benchidentity: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return ph, fmt.Errorf("benchidentity: storage directory %s is not empty", dir)
	}

	reg := prometheus.NewRegistry()
	tn, _ := lookupTuning(b.cfg.Tuning) // Validate checked the name
	opts := append([]goka.ProcessorOption{goka.WithLogger(log.New(b.cfg.ProcessorLog, "goka: ", log.LstdFlags))},
		tn.processorOptions(dir)...)
	p, err := identityproc.New(identityproc.ProcessorConfig{Brokers: b.brokers, StorageDir: dir, Registerer: reg, SkipProfiles: tn.skipProfiles, Sarama: tn.saramaConfig(),
		Engine: identityproc.Config{Status: b.cfg.Status, LeadTypes: b.cfg.LeadTypes}}, opts...)
	if err != nil {
		return ph, fmt.Errorf("benchidentity: %w", err)
	}

	prepare()
	mem := newMemSampler()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	start, cpu0 := time.Now(), measure.ProcessCPU()
	go func() { stopped <- p.Run(pctx) }()

	s, err := b.settle(ctx, start, reg, mem, stopped)
	if err != nil {
		cancel()
		select {
		case <-stopped:
		case <-time.After(time.Minute):
		}
		return ph, err
	}
	ph.Phase = phaseOf(n, s.at.Sub(start), s.cpu-cpu0, s.first)
	ph.Memory = mem.peak
	ph.Applied, ph.Duplicates = s.applied, s.duplicates
	ph.Messages = s.messages

	cancel()
	select {
	case err := <-stopped:
		if err != nil && !errors.Is(err, context.Canceled) {
			return ph, fmt.Errorf("benchidentity: identity processor: %w", err)
		}
	case <-time.After(2 * time.Minute):
		return ph, errors.New("benchidentity: the identity processor did not stop within 2 minutes")
	}
	if ph.Records, err = b.records(ctx, LoopTopic, TableTopic, schemas.TopicProfiles, schemas.TopicMerges, schemas.TopicAudit); err != nil {
		return ph, err
	}
	if ph.Table, err = inspectTable(dir, b.cfg.Partitions, fn); err != nil {
		return ph, err
	}
	if b.cfg.SkipRestarts {
		return ph, nil
	}
	// Restarts: on the storage the clean stop left (kept), and on an
	// empty one (what a crash leads to: rebuilt from the table topic).
	var kept bool
	if ph.RestartKept, kept, err = b.timeRecovery(ctx, dir); err != nil {
		return ph, err
	}
	if !kept {
		return ph, errors.New("benchidentity: the restart after a clean stop did not keep the storage")
	}
	// The same storage as a crash leaves it (no clean-shutdown marker):
	// kept, and caught up from its offset.
	if err := os.Remove(filepath.Join(dir, identityproc.CleanShutdownFile)); err != nil {
		return ph, fmt.Errorf("benchidentity: %w", err)
	}
	var repaired bool
	if ph.RestartRepaired, repaired, err = b.timeRecoveryRepaired(ctx, dir); err != nil {
		return ph, err
	}
	if !repaired {
		return ph, errors.New("benchidentity: the restart after an unclean stop did not keep the storage")
	}
	fresh, err := os.MkdirTemp("", "rolodex-benchidentity-rebuild-")
	if err != nil {
		return ph, fmt.Errorf("benchidentity: %w", err)
	}
	defer os.RemoveAll(fresh)
	if ph.RestartRebuilt, _, err = b.timeRecovery(ctx, fresh); err != nil {
		return ph, err
	}
	return ph, nil
}

// settledAt is what the identity phase saw when it settled.
type settledAt struct {
	at       time.Time     // the first of the two checks
	cpu      time.Duration // measure.ProcessCPU at that check
	first    time.Duration // first event handled, from the start
	applied  int64
	messages map[string]int64
	// duplicates are events recognised as folded before.
	duplicates int64
}

// settle polls the identity group every PollInterval until it has
// settled, and returns what it saw then.
//
// Settled: at a check k, for every partition of rolodex.events and of the
// loopback topic, the group's committed offset equals the end offset (the
// committed offsets are read first, the end offsets after); and the next
// check, PollInterval later, finds the same end offsets, all still
// committed.
//
// Why that means every profile is final: goka commits an input record only
// after every record its callback wrote (loopback messages, the table
// value, outputs) was acknowledged, and Rolodex completes a partition's
// writes in order (gokaconfig.OrderedProducerBuilder), so a committed
// offset implies that everything before it was handled and written.
// Whatever a committed record sent to the loopback topic was therefore
// below the end offsets read after it, hence committed too, and so was
// what that sent in turn: no message is left to handle, no callback is
// running, and the table holds the final nodes. The second check is a
// guard for tunings that replace the ordered producer.
//
// The phase's time and CPU are taken at check k. Sarama commits marked
// offsets every second (Consumer.Offsets.AutoCommit.Interval), so check k
// comes up to a second plus PollInterval after the last record was
// handled; the tuning commit-100ms shows what that costs.
func (b *bench) settle(ctx context.Context, start time.Time, reg *prometheus.Registry, mem *memSampler, stopped <-chan error) (settledAt, error) {
	topics := []string{schemas.TopicEvents, LoopTopic}
	tick := time.NewTicker(b.cfg.PollInterval)
	defer tick.Stop()
	var (
		cand       *settledAt
		candEnds   map[string]int64
		first      time.Duration
		lastMoved        = time.Now()
		lastComm   int64 = -1
		lastErr    error
		lastReport = start
	)
	for {
		select {
		case <-ctx.Done():
			return settledAt{}, ctx.Err()
		case err := <-stopped:
			if err == nil {
				err = errors.New("stopped")
			}
			return settledAt{}, fmt.Errorf("benchidentity: the identity processor stopped before settling: %w", err)
		case <-tick.C:
		}
		now, cpu := time.Now(), measure.ProcessCPU()
		mem.sample()
		c := readCounters(reg)
		if first == 0 && c.applied+c.duplicates > 0 {
			first = now.Sub(start)
		}
		committed, ends, err := b.lag(ctx, schemas.GroupIdentity, topics...)
		if err != nil {
			lastErr = err
			cand = nil
			continue
		}
		if b.cfg.Progress != nil && now.Sub(lastReport) >= 10*time.Second {
			lastReport = now
			var total int64
			for _, e := range ends {
				total += e
			}
			fmt.Fprintf(b.cfg.Progress, "identity: %s: %d events handled, %d of %d input and loopback records committed\n",
				now.Sub(start).Round(time.Second), c.applied+c.duplicates, committed, total)
		}
		if committed != lastComm {
			lastComm, lastMoved = committed, now
		} else if now.Sub(lastMoved) > b.cfg.StallTimeout {
			return settledAt{}, fmt.Errorf("benchidentity: the identity group's committed offsets have not moved for %v and it has not settled (last error: %v)", b.cfg.StallTimeout, lastErr)
		}
		var total int64
		for _, e := range ends {
			total += e
		}
		if committed != total {
			cand = nil
			continue
		}
		if cand != nil && sameOffsets(candEnds, ends) {
			cand.first = first
			return *cand, nil
		}
		cand = &settledAt{at: now, cpu: cpu, applied: c.applied, duplicates: c.duplicates, messages: c.messages}
		candEnds = ends
	}
}

// lag reads the committed offsets of group on topics, then their end
// offsets (in this order: see settle). committed is the sum over the
// partitions of min(committed, end), ends the end offset per
// "topic/partition".
func (b *bench) lag(ctx context.Context, group string, topics ...string) (committed int64, ends map[string]int64, err error) {
	offs, err := b.adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err != nil {
		return 0, nil, fmt.Errorf("benchidentity: committed offsets of %s: %w", group, err)
	}
	listed, err := b.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, nil, fmt.Errorf("benchidentity: end offsets: %w", err)
	}
	if err := listed.Error(); err != nil {
		return 0, nil, fmt.Errorf("benchidentity: end offsets: %w", err)
	}
	ends = map[string]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		ends[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
		if c, ok := offs.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At > 0 {
			committed += min(c.At, o.Offset)
		}
	})
	return committed, ends, nil
}

func sameOffsets(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// counters are the identity stage's own metrics.
type counters struct {
	applied, duplicates int64
	messages            map[string]int64
}

func readCounters(reg *prometheus.Registry) counters {
	c := counters{messages: map[string]int64{}}
	mfs, err := reg.Gather()
	if err != nil {
		return c
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			label := ""
			if len(m.GetLabel()) > 0 {
				label = m.GetLabel()[0].GetValue()
			}
			v := int64(m.GetCounter().GetValue())
			switch mf.GetName() {
			case "rolodex_identity_events_total":
				switch label {
				case "applied":
					c.applied = v
				case "duplicate":
					c.duplicates = v
				}
			case "rolodex_identity_messages_total":
				c.messages[label] = v
			}
		}
	}
	return c
}

// timeRecovery starts the identity processor on dir and returns how long it
// took until every partition it owns was recovered (goka's Recovered),
// and whether it kept the storage it found.
func (b *bench) timeRecovery(ctx context.Context, dir string) (time.Duration, bool, error) {
	took, p, err := b.recover(ctx, dir)
	if err != nil {
		return 0, false, err
	}
	return took, p.KeptStorage(), nil
}

// timeRecoveryRepaired is timeRecovery that reports whether the processor
// kept the storage of an unclean stop.
func (b *bench) timeRecoveryRepaired(ctx context.Context, dir string) (time.Duration, bool, error) {
	took, p, err := b.recover(ctx, dir)
	if err != nil {
		return 0, false, err
	}
	return took, p.KeptAfterCrash(), nil
}

func (b *bench) recover(ctx context.Context, dir string) (time.Duration, *identityproc.Processor, error) {
	p, err := identityproc.New(identityproc.ProcessorConfig{Brokers: b.brokers, StorageDir: dir, Registerer: prometheus.NewRegistry()},
		goka.WithLogger(log.New(b.cfg.ProcessorLog, "goka restart: ", log.LstdFlags)))
	if err != nil {
		return 0, nil, fmt.Errorf("benchidentity: restart: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- p.Run(pctx) }()
	tick := time.NewTicker(b.cfg.PollInterval)
	defer tick.Stop()
	var took time.Duration
	for took == 0 {
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case err := <-stopped:
			return 0, nil, fmt.Errorf("benchidentity: the restarted processor stopped: %v", err)
		case <-time.After(b.cfg.StallTimeout):
			return 0, nil, fmt.Errorf("benchidentity: the restarted processor did not recover within %v", b.cfg.StallTimeout)
		case <-tick.C:
			if p.Recovered() {
				took = time.Since(start)
			}
		}
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(2 * time.Minute):
		return 0, nil, errors.New("benchidentity: the restarted processor did not stop within 2 minutes")
	}
	return took, p, nil
}
