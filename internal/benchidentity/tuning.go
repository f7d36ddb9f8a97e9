package benchidentity

import (
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/processors/identity"
)

// TuningShipped is the identity processor exactly as Rolodex runs it.
const TuningShipped = "shipped"

// tuning is a set of goka options passed to identity.New after Rolodex's
// own, which they override: a way to measure what a setting is worth
// before changing processors/identity or internal/gokaconfig.
type tuning struct {
	doc     string
	options func(storageDir string) []goka.ProcessorOption
	// processor builds the processor; nil: identity.New.
	processor func(identity.ProcessorConfig, ...goka.ProcessorOption) (*goka.Processor, error)
	// skipProfiles turns off rolodex.profiles (not how Rolodex runs).
	skipProfiles bool
}

var tunings = map[string]tuning{
	TuningShipped: {doc: "identity.New as Rolodex runs it (internal/gokaconfig sarama settings, LevelDB defaults)",
		options: func(string) []goka.ProcessorOption { return nil }},
	"commit-100ms": {doc: "sarama commits marked offsets every 100ms instead of 1s (how soon settling is seen)",
		options: func(string) []goka.ProcessorOption {
			return withSarama(func(c *sarama.Config) { c.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond })
		}},
	"no-compression": {doc: "sarama produces uncompressed batches instead of snappy",
		options: func(string) []goka.ProcessorOption {
			return withSarama(func(c *sarama.Config) { c.Producer.Compression = sarama.CompressionNone })
		}},
	"big-flush": {doc: "sarama producer flushes every 20ms or 1 MiB (instead of 5ms or 256 KiB), up to 10 requests in flight",
		options: func(string) []goka.ProcessorOption {
			return withSarama(func(c *sarama.Config) {
				c.Producer.Flush.Frequency = 20 * time.Millisecond
				c.Producer.Flush.Bytes = 1 << 20
				c.Net.MaxOpenRequests = 10
			})
		}},
	"small-buffers": {doc: "sarama channel buffers of 16 messages (instead of 256) and fetches of 64 KiB (instead of 1 MiB): loopback messages wait behind fewer events",
		options: func(string) []goka.ProcessorOption {
			return withSarama(func(c *sarama.Config) {
				c.ChannelBufferSize = 16
				c.Consumer.Fetch.Default = 64 << 10
			})
		}},
	"big-buffers": {doc: "sarama channel buffers of 4096 messages and goka partition channels of 1000 (instead of 256 and 10)",
		options: func(string) []goka.ProcessorOption {
			return append(withSarama(func(c *sarama.Config) { c.ChannelBufferSize = 4096 }), goka.WithPartitionChannelSize(1000))
		}},
	"short-processing": {doc: "sarama Consumer.MaxProcessingTime 50ms instead of goka's 1s: a fetch response whose messages a busy partition does not take in time no longer holds up the next fetch of every partition",
		options: func(string) []goka.ProcessorOption {
			return withSarama(func(c *sarama.Config) { c.Consumer.MaxProcessingTime = 50 * time.Millisecond })
		}},
	"unordered": {doc: "the plain goka producer instead of gokaconfig.OrderedProducerBuilder: what completing emits in order costs (NOT safe: a crash may skip a message's writes)",
		options: func(string) []goka.ProcessorOption {
			sc := gokaconfig.Sarama("rolodex-identity")
			return []goka.ProcessorOption{goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(sc))}
		}},
	"no-profiles": {doc: "SkipProfiles: no snapshot on rolodex.profiles after each root change (what emitting them costs; NOT how Rolodex runs)",
		options: func(string) []goka.ProcessorOption { return nil }, skipProfiles: true},
	"leveldb": {doc: "LevelDB with a 10-bit bloom filter, 16 MiB write buffer, 32 MiB block cache, no compression (instead of goleveldb defaults: no filter, 4 MiB, 8 MiB, snappy)",
		options: func(dir string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithStorageBuilder(storage.BuilderWithOptions(dir, &opt.Options{
				Filter:             filter.NewBloomFilter(10),
				WriteBuffer:        16 << 20,
				BlockCacheCapacity: 32 << 20,
				Compression:        opt.NoCompression,
			}))}
		}},
}

// lookupTuning returns the tuning name, or the combination of tunings
// "a+b+...": their options in that order (later ones override earlier
// ones), and the processor of the last that builds one.
func lookupTuning(name string) (tuning, bool) {
	if t, ok := tunings[name]; ok {
		return t, true
	}
	var parts []tuning
	for _, n := range strings.Split(name, "+") {
		t, ok := tunings[n]
		if !ok {
			return tuning{}, false
		}
		parts = append(parts, t)
	}
	c := tuning{doc: name, options: func(dir string) []goka.ProcessorOption {
		var out []goka.ProcessorOption
		for _, t := range parts {
			out = append(out, t.options(dir)...)
		}
		return out
	}}
	for _, t := range parts {
		if t.processor != nil {
			c.processor = t.processor
		}
		c.skipProfiles = c.skipProfiles || t.skipProfiles
	}
	return c, true
}

// Tunings returns the names of the tunings, sorted.
func Tunings() []string {
	out := make([]string, 0, len(tunings))
	for name := range tunings {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// TuningDoc says what a tuning (or a "+" combination) changes; "" for an
// unknown name.
func TuningDoc(name string) string {
	if t, ok := tunings[name]; ok {
		return t.doc
	}
	var docs []string
	for _, n := range strings.Split(name, "+") {
		docs = append(docs, n+": "+tunings[n].doc)
	}
	if _, ok := lookupTuning(name); !ok {
		return ""
	}
	return strings.Join(docs, "; ")
}

// withSarama returns the sarama builders of Rolodex's configuration
// changed by mod, as identity.Options wires them.
func withSarama(mod func(*sarama.Config)) []goka.ProcessorOption {
	sc := gokaconfig.Sarama("rolodex-identity")
	mod(sc)
	return []goka.ProcessorOption{
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(sc)),
		goka.WithProducerBuilder(gokaconfig.OrderedProducerBuilder(goka.ProducerBuilderWithConfig(sc))),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
	}
}
