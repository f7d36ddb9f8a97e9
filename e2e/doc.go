// Package e2e holds the end-to-end tests that run Rolodex's components
// together the way a deployment does, each over its real transport: HTTP
// ingest into Kafka (kfake over TCP), the identity processor (goka), the
// ClickHouse sink and a real ClickHouse server (the one scripts/clickhouse
// starts, found through ROLODEX_CLICKHOUSE_ADDR; without it the tests fail,
// they never skip). It wires components like cmd/rolodex does and has no
// code of its own besides the tests. TestREADME runs the README's marked
// commands in a shell, as a new user does: it installs the rolodex binary,
// starts dev mode and its own ClickHouse server with the README's lines.
package e2e
