package identity

import (
	"context"
	"fmt"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// EnsureTopics creates the identity group's topics (Topics) with the
// partition count of rolodex.events, which must exist: goka requires the
// group's input, table and loopback to be co-partitioned. It returns that
// partition count. Topics that exist are left as they are.
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) (int32, error) {
	parts, err := kafkaclient.EnsureTopicsLike(ctx, admin, replication, schemas.TopicEvents, Topics)
	if err != nil {
		return 0, fmt.Errorf("identity: %w", err)
	}
	return parts, nil
}

// Topics returns the topics the identity stage needs, to be created before
// any instance starts (goka's own creation races between instances): its
// table (compacted) and loopback with the partition count of rolodex.events
// (goka requires co-partitioning), and its outputs (rolodex.profiles
// compacted).
func Topics(partitions int32) []kafkaclient.TopicSpec {
	// A root holds the contributions of every node of its profile; with
	// loose merge-protection limits that can pass Kafka's 1 MB default.
	big := ptr(fmt.Sprint(gokaconfig.MaxMessageBytes))
	compact := map[string]*string{"cleanup.policy": ptr("compact"), "max.message.bytes": big}
	return []kafkaclient.TopicSpec{
		{Name: string(goka.GroupTable(schemas.GroupIdentity)), Partitions: partitions, Configs: compact},
		{Name: schemas.GroupIdentity + "-loop", Partitions: partitions, Configs: map[string]*string{"max.message.bytes": big}},
		{Name: schemas.TopicMerges, Partitions: partitions},
		{Name: schemas.TopicAudit, Partitions: partitions},
		{Name: schemas.TopicProfiles, Partitions: partitions, Configs: compact},
		// Lead routing's input (keyed by tenant), written by the roots that
		// fold a lead; the routing stage creates it too.
		{Name: schemas.TopicRoutingInput, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": big}},
		// Fan-out's input (keyed by profile id), written by the roots
		// that fold a topic event or change a profile's blacklist or
		// consent; the fan-out stage creates it too.
		{Name: schemas.TopicFanoutInput, Partitions: partitions, Configs: map[string]*string{"max.message.bytes": big}},
		// Where an input record that does not decode goes (ingest creates
		// it too).
		{Name: schemas.TopicDeadLetter, Partitions: partitions},
	}
}

func ptr(s string) *string { return &s }
