package identity

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/rolodex/rolodex/internal/devbroker"
)

// envBroker turns the test binary into a broker in its own process, so
// that a run's memory is the processor's alone (the embedded kfake broker
// keeps every record in memory):
//
//	go test -c -o /tmp/benchidentity.test ./bench/identity/
//	ROLODEX_BENCHIDENTITY_BROKER=127.0.0.1:19092 /tmp/benchidentity.test &
//	go run ./cmd/rolodex bench identity --brokers 127.0.0.1:19092 ...
//	kill -INT %1   # prints the broker's peak RSS
const envBroker = "ROLODEX_BENCHIDENTITY_BROKER"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envBroker); addr != "" {
		os.Exit(runBroker(addr))
	}
	os.Exit(m.Run())
}

// runBroker serves a kfake broker on addr until SIGINT or SIGTERM.
func runBroker(addr string) int {
	c, err := devbroker.Start(devbroker.Config{Addr: addr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchidentity broker:", err)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "benchidentity broker: listening on %v until SIGINT or SIGTERM\n", c.ListenAddrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_, hwm := procMemory()
	fmt.Fprintf(os.Stderr, "benchidentity broker: peak RSS %d MiB\n", hwm>>20)
	return 0
}
