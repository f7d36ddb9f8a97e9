package measure

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/devbroker"
	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// CheckBrokers reports a broker list a run cannot use; an empty one is
// fine (the run starts an embedded broker).
func CheckBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return nil
	}
	kc := kafkaclient.Config{Brokers: brokers}
	return kc.Validate()
}

// StartBroker returns the brokers given or, when there are none, starts
// an embedded kfake broker in this process on 127.0.0.1:0 (auto-created
// topics get partitions partitions) and returns its address and the
// cluster to close. cluster is nil against external brokers.
func StartBroker(brokers []string, partitions int32) (addrs []string, cluster *kfake.Cluster, err error) {
	if len(brokers) > 0 {
		return brokers, nil, nil
	}
	cluster, err = devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0", Partitions: int(partitions)})
	if err != nil {
		return nil, nil, err
	}
	return cluster.ListenAddrs(), cluster, nil
}

// Ping checks that the Kafka at brokers answers every client.
func Ping(ctx context.Context, brokers []string, clients ...*kgo.Client) error {
	for _, cl := range clients {
		if err := cl.Ping(ctx); err != nil {
			return fmt.Errorf("kafka at %v: %w", brokers, err)
		}
	}
	return nil
}
