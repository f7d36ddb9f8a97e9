package identity

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/rolodex/rolodex/bench/measure"
	"github.com/rolodex/rolodex/internal/gokaconfig"
	identityproc "github.com/rolodex/rolodex/processors/identity"
	"github.com/rolodex/rolodex/schemas"
)

// GroupGokaFloor is the group of the goka floor phase.
const GroupGokaFloor = "rolodex-bench-goka-floor"

// runGokaFloor measures what goka itself costs, before any identity logic:
// a goka group with Rolodex's goka options (sarama settings, ordered
// producer, LevelDB storage) reads the n stored events without decoding
// them and, for each, reads its key's value and writes it back (a counter):
// one local read, one local write and one table record per event, the
// least any stateful goka processor does. The identity stage does that and
// more for every input and every loopback message. The phase ends when the
// group has committed every record of rolodex.events.
func (b *bench) runGokaFloor(ctx context.Context, n int) (Phase, error) {
	dir, err := os.MkdirTemp("", "rolodex-benchfloor-")
	if err != nil {
		return Phase{}, fmt.Errorf("benchidentity: %w", err)
	}
	defer os.RemoveAll(dir)
	g := goka.DefineGroup(GroupGokaFloor,
		goka.Input(schemas.TopicEvents, new(codec.Bytes), func(ctx goka.Context, _ any) {
			var count uint64
			if v := ctx.Value(); v != nil {
				count = binary.BigEndian.Uint64(v.([]byte))
			}
			ctx.SetValue(binary.BigEndian.AppendUint64(nil, count+1))
		}),
		goka.Persist(new(codec.Bytes)),
	)
	opts := append(identityproc.Options(b.brokers, dir, 1, nil, new(gokaconfig.Ordered)),
		goka.WithLogger(log.New(b.cfg.ProcessorLog, "goka floor: ", log.LstdFlags)),
		goka.WithClientID(GroupGokaFloor))
	p, err := goka.NewProcessor(b.brokers, g, opts...)
	if err != nil {
		return Phase{}, fmt.Errorf("benchidentity: goka floor: %w", err)
	}
	prepare()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	start, cpu0 := time.Now(), measure.ProcessCPU()
	go func() { stopped <- p.Run(pctx) }()

	tick := time.NewTicker(b.cfg.PollInterval)
	defer tick.Stop()
	var (
		first     time.Duration
		lastComm  int64 = -1
		lastMoved       = time.Now()
		lastErr   error
	)
	for {
		select {
		case <-ctx.Done():
			return Phase{}, ctx.Err()
		case err := <-stopped:
			if err == nil {
				err = errors.New("stopped")
			}
			return Phase{}, fmt.Errorf("benchidentity: the goka floor processor stopped: %w", err)
		case <-tick.C:
		}
		now, cpu := time.Now(), measure.ProcessCPU()
		committed, ends, err := b.lag(ctx, GroupGokaFloor, schemas.TopicEvents)
		if err != nil {
			lastErr = err
			continue
		}
		var total int64
		for _, e := range ends {
			total += e
		}
		if first == 0 && committed > 0 {
			first = now.Sub(start)
		}
		if committed != lastComm {
			lastComm, lastMoved = committed, now
		} else if now.Sub(lastMoved) > b.cfg.StallTimeout {
			return Phase{}, fmt.Errorf("benchidentity: the goka floor group has not committed for %v (last error: %v)", b.cfg.StallTimeout, lastErr)
		}
		if committed == total {
			cancel()
			select {
			case <-stopped:
			case <-time.After(2 * time.Minute):
				return Phase{}, errors.New("benchidentity: the goka floor processor did not stop within 2 minutes")
			}
			return phaseOf(n, now.Sub(start), cpu-cpu0, first), nil
		}
	}
}
