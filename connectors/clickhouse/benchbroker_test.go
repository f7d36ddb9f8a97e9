//go:build unix

package clickhouse

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// The sink benchmark's broker process (bench_test.go, benchBrokers). It is
// in a file of its own because TestMain (crash_test.go, unix) dispatches to
// it and the benchmark itself builds on linux only.

// benchBrokerEnv makes the test binary the sink benchmark's broker
// (TestMain): a kfake cluster of one broker with the sink's topics, of the
// variable's value partitions each, which prints its addresses on stdout
// and runs until its stdin closes (the benchmark ended or died).
const benchBrokerEnv = "ROLODEX_TEST_BENCH_BROKER"

// childBroker is the process benchBrokers starts.
func childBroker() int {
	n, err := strconv.Atoi(os.Getenv(benchBrokerEnv))
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "%s=%q: want a partition count\n", benchBrokerEnv, os.Getenv(benchBrokerEnv))
		return 2
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(n), Topics...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark broker:", err)
		return 1
	}
	defer c.Close()
	fmt.Println(strings.Join(c.ListenAddrs(), ","))
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	return 0
}
