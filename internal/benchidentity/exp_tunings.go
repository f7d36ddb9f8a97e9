package benchidentity

// TEMPORARY: registers the experimental copy of the identity processor
// (package exp) as tunings. Delete with exp/ after measuring.

import (
	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/internal/benchidentity/exp"
	"github.com/rolodex/rolodex/processors/identity"
)

func init() {
	for name, v := range map[string]exp.Variant{
		"exp-copy":        {},
		"exp-memo":        {LinkMemo: true},
		"exp-replay":      {ProposeOnReplayOnly: true},
		"exp-memo-replay": {LinkMemo: true, ProposeOnReplayOnly: true},
		"exp-write":       {WriteOnChange: true},
		"exp-cache":       {NodeCache: true},
		"exp-all":         {LinkMemo: true, ProposeOnReplayOnly: true, WriteOnChange: true, NodeCache: true},
		"exp-memo-write":  {LinkMemo: true, WriteOnChange: true},
		"exp-memo-cache":  {LinkMemo: true, NodeCache: true},
	} {
		v := v
		tunings[name] = tuning{doc: "experiment " + name,
			options: func(string) []goka.ProcessorOption { return nil },
			processor: func(cfg identity.ProcessorConfig, opts ...goka.ProcessorOption) (*goka.Processor, error) {
				return exp.New(exp.ProcessorConfig{Brokers: cfg.Brokers, StorageDir: cfg.StorageDir, Registerer: cfg.Registerer, SkipProfiles: cfg.SkipProfiles}, v, opts...)
			}}
	}
}
