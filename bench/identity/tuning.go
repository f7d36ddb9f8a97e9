package identity

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
)

// TuningShipped is the identity processor exactly as Rolodex runs it.
const TuningShipped = "shipped"

// tuning is a change to how the identity processor runs, applied on top
// of Rolodex's own goka options (later options override earlier ones): a
// way to measure what a setting is worth before changing
// processors/identity or internal/gokaconfig.
type tuning struct {
	doc string
	// sarama changes Rolodex's sarama configuration (gokaconfig.Sarama).
	sarama func(*sarama.Config)
	// unordered replaces gokaconfig.OrderedProducerBuilder with goka's
	// plain producer.
	unordered bool
	// options are further goka options.
	options func(storageDir string) []goka.ProcessorOption
	// skipProfiles turns off rolodex.profiles (not how Rolodex runs).
	skipProfiles bool
}

var tunings = map[string]tuning{
	TuningShipped: {doc: "identity.New as Rolodex runs it (internal/gokaconfig sarama settings, ordered producer, the identity store, processors/identity/store.go, over LevelDB with identity.StorageOptions: a bloom filter, 2 MiB write buffer and block cache)"},
	"commit-100ms": {doc: "sarama commits marked offsets every 100ms instead of 1s (how soon settling is seen)",
		sarama: func(c *sarama.Config) { c.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond }},
	"no-compression": {doc: "sarama produces uncompressed batches instead of snappy",
		sarama: func(c *sarama.Config) { c.Producer.Compression = sarama.CompressionNone }},
	"big-flush": {doc: "sarama producer flushes every 20ms or 1 MiB (instead of 5ms or 256 KiB), up to 10 requests in flight (instead of 5)",
		sarama: func(c *sarama.Config) {
			c.Producer.Flush.Frequency = 20 * time.Millisecond
			c.Producer.Flush.Bytes = 1 << 20
			c.Net.MaxOpenRequests = 10
		}},
	"small-buffers": {doc: "sarama channel buffers of 16 messages (instead of 256) and fetches of 64 KiB (instead of 1 MiB): loopback messages wait behind fewer events",
		sarama: func(c *sarama.Config) {
			c.ChannelBufferSize = 16
			c.Consumer.Fetch.Default = 64 << 10
		}},
	"big-buffers": {doc: "sarama channel buffers of 4096 messages and goka partition channels of 1000 (instead of 256 and 10)",
		sarama: func(c *sarama.Config) { c.ChannelBufferSize = 4096 },
		options: func(string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithPartitionChannelSize(1000)}
		}},
	"short-processing": {doc: "sarama Consumer.MaxProcessingTime 50ms instead of goka's 1s: a partition slow to take its messages holds up the next fetch for less long",
		sarama: func(c *sarama.Config) { c.Consumer.MaxProcessingTime = 50 * time.Millisecond }},
	"unordered": {doc: "goka's plain producer instead of gokaconfig.OrderedProducerBuilder: what completing emits in order costs (NOT safe: a crash may skip a message's writes)",
		unordered: true},
	"no-profiles": {doc: "SkipProfiles: no snapshot on rolodex.profiles after each root change (what emitting them costs; NOT how Rolodex runs)",
		skipProfiles: true},
	"leveldb": {doc: "goka's own LevelDB storage instead of the identity store, with a 10-bit bloom filter, 16 MiB write buffer, 32 MiB block cache, no compression (instead of goleveldb's no filter, 4 MiB, 8 MiB, snappy)",
		options: func(dir string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithStorageBuilder(storage.BuilderWithOptions(dir, &opt.Options{
				Filter:             filter.NewBloomFilter(10),
				WriteBuffer:        16 << 20,
				BlockCacheCapacity: 32 << 20,
				Compression:        opt.NoCompression,
			}))}
		}},
	"leveldb-defaults": {doc: "goka's own LevelDB storage instead of the identity store, with goleveldb's default options (no filter, 4 MiB write buffer)",
		options: func(dir string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithStorageBuilder(storage.DefaultBuilder(dir))}
		}},
	"leveldb-filter": {doc: "goka's own LevelDB storage instead of the identity store, with a 10-bit bloom filter and an 8 MiB write buffer, goleveldb's cache and snappy otherwise (what the identity stage ran on before issue 17)",
		options: func(dir string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithStorageBuilder(storage.BuilderWithOptions(dir, &opt.Options{
				Filter:      filter.NewBloomFilter(10),
				WriteBuffer: 8 << 20,
			}))}
		}},
	"leveldb-snappy": {doc: "goka's own LevelDB storage instead of the identity store, with a 10-bit bloom filter, 16 MiB write buffer, 32 MiB block cache, snappy kept",
		options: func(dir string) []goka.ProcessorOption {
			return []goka.ProcessorOption{goka.WithStorageBuilder(storage.BuilderWithOptions(dir, &opt.Options{
				Filter:             filter.NewBloomFilter(10),
				WriteBuffer:        16 << 20,
				BlockCacheCapacity: 32 << 20,
			}))}
		}},
}

// lookupTuning returns the tuning name, or the combination "a+b+..." of
// tunings: all their changes, applied in that order.
func lookupTuning(name string) (tuning, bool) {
	if t, ok := tunings[name]; ok {
		return t, true
	}
	var (
		parts []tuning
		docs  []string
	)
	for _, n := range strings.Split(name, "+") {
		t, ok := tunings[n]
		if !ok {
			return tuning{}, false
		}
		parts = append(parts, t)
		docs = append(docs, n+": "+t.doc)
	}
	c := tuning{doc: strings.Join(docs, "; ")}
	for _, t := range parts {
		c.unordered = c.unordered || t.unordered
		c.skipProfiles = c.skipProfiles || t.skipProfiles
	}
	c.sarama = func(sc *sarama.Config) {
		for _, t := range parts {
			if t.sarama != nil {
				t.sarama(sc)
			}
		}
	}
	c.options = func(dir string) []goka.ProcessorOption {
		var out []goka.ProcessorOption
		for _, t := range parts {
			if t.options != nil {
				out = append(out, t.options(dir)...)
			}
		}
		return out
	}
	return c, true
}

// saramaConfig returns the sarama configuration of the tuning, nil for
// Rolodex's own (identity.ProcessorConfig.Sarama).
func (t tuning) saramaConfig() *sarama.Config {
	if t.sarama == nil {
		return nil
	}
	sc := gokaconfig.Sarama("rolodex-identity")
	t.sarama(sc)
	return sc
}

// processorOptions returns the goka options of the tuning, to pass after
// Rolodex's own.
func (t tuning) processorOptions(storageDir string) []goka.ProcessorOption {
	var out []goka.ProcessorOption
	if t.unordered {
		// Replaces the ordered producer identity.New wires: its barriers
		// then complete at once.
		sc := t.saramaConfig()
		if sc == nil {
			sc = gokaconfig.Sarama("rolodex-identity")
		}
		out = append(out, goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(sc)))
	}
	if t.options != nil {
		out = append(out, t.options(storageDir)...)
	}
	return out
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

// TuningDoc says what a tuning, or a "+" combination, changes; "" for an
// unknown name.
func TuningDoc(name string) string {
	t, _ := lookupTuning(name)
	return t.doc
}
