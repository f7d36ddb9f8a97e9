package identity

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
	"github.com/rolodex/rolodex/schemas"
)

// EnsureTopics creates the identity group's topics (Topics) with the
// partition count of rolodex.events, which must exist: goka requires the
// group's input, table and loopback to be co-partitioned. It returns that
// partition count. Topics that exist are left as they are.
func EnsureTopics(ctx context.Context, admin *kgo.Client, replication int16) (int32, error) {
	td, err := kadm.NewClient(admin).ListTopics(ctx, schemas.TopicEvents)
	if err != nil {
		return 0, fmt.Errorf("identity: describe %s: %w", schemas.TopicEvents, err)
	}
	t, ok := td[schemas.TopicEvents]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("identity: describe %s: %v", schemas.TopicEvents, t.Err)
	}
	parts := int32(len(t.Partitions))
	if err := kafkaclient.EnsureTopics(ctx, admin, replication, Topics(parts)...); err != nil {
		return 0, fmt.Errorf("identity: %w", err)
	}
	return parts, nil
}
