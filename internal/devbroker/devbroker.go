// Package devbroker starts the embedded Kafka broker of dev mode: franz-go's
// kfake, reached over TCP like any broker.
package devbroker

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config of the embedded broker.
type Config struct {
	// Addr is host:port to listen on. Port 0 picks a free port. The broker
	// advertises itself as 127.0.0.1:<port> (kfake's fixed host), so clients
	// must run on the same machine.
	Addr string
	// DataDir, when set, keeps topics, records and committed offsets across
	// restarts.
	DataDir string
	// Partitions is the default partition count of auto-created topics.
	Partitions int
}

// Start runs the broker until Close.
func Start(cfg Config) (*kfake.Cluster, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("devbroker: address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("devbroker: address %q: bad port", cfg.Addr)
	}
	if port == 0 {
		// kfake picks random ports itself only when none is given.
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("devbroker: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if cfg.Partitions > 0 {
		opts = append(opts, kfake.DefaultNumPartitions(cfg.Partitions))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devbroker: start on %s: %w", cfg.Addr, err)
	}
	return c, nil
}
