// Package system holds the tests that run against real servers the scripts
// start, not against kfake: they build only with the tag "system", so that
// `go test ./...` needs no server.
//
//	./scripts/kafka install && eval "$(./scripts/kafka start /tmp/kafka)"
//	./scripts/clickhouse install && eval "$(./scripts/clickhouse start /tmp/ch)"
//	go test -tags system ./system/
//	./scripts/kafka stop /tmp/kafka; ./scripts/clickhouse stop /tmp/ch
//
// Run with the tag but without the environment of a started cluster (or,
// for TestRolodexOnKafka, of a ClickHouse server), a test fails (it never
// skips) and says how to start one. docs/kafka.md.
//
// kafka_test.go checks the cluster and the clients on it with topics and
// groups of unique names, so those tests run on any cluster, any number of
// times. TestRolodexOnKafka (rolodex_test.go) runs Rolodex itself: the
// rolodex binary built into a temporary directory, a configuration file
// with two partners of two tenants (and four of a third for wave 2's
// rooms), and `rolodex run ingest`, `run processors`, `run api` and `run
// sink` as four processes. Rolodex's topic and group names are fixed, so it
// needs a cluster Rolodex never ran on. It is one test function on the
// cluster scripts/kafka started, in phases (subtests) that build on each
// other, each starting from what the one before left: "operator layout"
// (start the four processes, their /healthz, the topics they made,
// replicated 3 times), "end to end" (HTTP and kcat traffic, then the query
// API, the CLI, ClickHouse's tables and reports, kcat and the metrics
// against the reference model), "wave 2" (a tag rule, a message's
// lifecycle, lead routing with its webhook delivery and partner fan-out,
// each once, in a tenant of their own, wave2_test.go), "broker failure" (a
// broker SIGKILLed and restarted with scripts/kafka under a steady HTTP
// load, then the same comparison over every event acknowledged so far) and
// "shutdown" (SIGTERM; each process exits 0). One cluster for all phases,
// rather than a cluster per test started from Go, keeps the run within its
// time budget on two cores (a 3-broker start takes 8-18 s, and a second
// cluster beside the first doubles the brokers' memory and CPU); the price
// is that it runs once per cluster: a second run on the same cluster fails
// at once, saying so, and `go test -count=2` does too. It creates a
// ClickHouse database of its own, dropped after a run that passed; a run
// that failed keeps it and the processes' logs, and says where.
package system
