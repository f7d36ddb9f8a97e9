// Package clickhouse is the ClickHouse side of Rolodex: the versioned
// schema (Migrate), the sink that copies rolodex.events,
// rolodex.deadletter, rolodex.profiles, rolodex.profile.merges,
// rolodex.profile.tags and the lifecycle's table topic into tables (Sink:
// Connect, Run, Close; messages.go for the message tables), the
// analyst reports (Reports, RunReport) and the profile export
// (ExportProfiles).
//
// Start with docs/tables.md (what lands where) and docs/reports.md (how to
// query it exactly). The server may be as old as ClickHouse 18.16 (Debian's
// package) or current; the DDL keeps to what both understand.
//
// Idempotency: ClickHouse 18.16 cannot deduplicate inserts into
// non-replicated tables, so a batch written twice (the sink crashed after the
// insert and before its Kafka commit, or an insert was cut off and retried)
// is stored twice. Every table is a ReplacingMergeTree whose sorting key is
// the identity of a row (an event's tenant, source and id; a dead letter's
// Kafka position; a profile's id; a node's id; a merged-away profile's
// id; every field of a tag change; a message event's tenant, message and
// id; a message's tenant and id), so copies collapse on merge, and every report view reads with FINAL,
// so numbers are exact before the merge happens too. Where one key gets
// different rows over time (profiles, profile_nodes, profile_merges,
// message_states), the
// version column that picks the winner is computed from the record itself
// and only grows (profiles.go), so the order in which the sink reads
// records does not matter.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDatabase is the database Rolodex writes to unless told otherwise.
const DefaultDatabase = "rolodex"

// ConnConfig says how to reach ClickHouse over its native protocol (the
// HTTP protocol of clickhouse-go does not work against 18.16), and, for the
// sink's events INSERT only, over its HTTP interface (HTTPAddr).
type ConnConfig struct {
	// Addr is host:port of the native protocol (usually port 9000). Required.
	Addr string
	// HTTPAddr is host:port of the HTTP interface (usually port 8123).
	// When set, the sink writes the events table over it, in Native
	// format encoded with ch-go (httpinsert.go), at less than half the
	// client CPU per row of clickhouse-go's insert; every other table and
	// every query keeps to Addr. Both must reach the same server. Empty:
	// everything goes over Addr.
	HTTPAddr string
	// Database holds Rolodex's tables. Default DefaultDatabase. It is
	// created by Migrate; the connection itself opens the "default"
	// database, so it may not exist yet.
	Database string
	// Username and Password. Default user "default", no password.
	Username string
	Password string
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds one read from the server when the query has no
	// deadline of its own. Default 60s.
	ReadTimeout time.Duration
}

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func (c *ConnConfig) setDefaults() {
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 60 * time.Second
	}
}

// Validate reports a config that cannot work.
func (c *ConnConfig) Validate() error {
	if c.Addr == "" {
		return errors.New("clickhouse: no address configured (host:port of the native protocol)")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("clickhouse: address %q is not host:port: %w", c.Addr, err)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("clickhouse: HTTP address %q is not host:port: %w", c.HTTPAddr, err)
		}
	}
	if err := validDatabase(c.Database); err != nil {
		return err
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 {
		return errors.New("clickhouse: DialTimeout and ReadTimeout must not be negative")
	}
	return nil
}

func validDatabase(db string) error {
	if !dbName.MatchString(db) {
		return fmt.Errorf("clickhouse: database name %q: want letters, digits and _ (not starting with a digit)", db)
	}
	return nil
}

// Open connects to ClickHouse and checks that it answers. The caller closes
// the connection. cfg.Database is not used by the connection itself; pass
// it to Migrate, NewSink and RunReport.
func Open(ctx context.Context, cfg ConnConfig) (driver.Conn, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := chgo.Open(&chgo.Options{
		Protocol: chgo.Native,
		Addr:     []string{cfg.Addr},
		Auth:     chgo.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		// LZ4 is what clickhouse-client uses; 18.16 speaks it.
		Compression:  &chgo.Compression{Method: chgo.CompressionLZ4},
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		MaxOpenConns: 8,
		MaxIdleConns: 4,
		ClientInfo:   chgo.ClientInfo{Products: []struct{ Name, Version string }{{Name: "rolodex", Version: "1"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", cfg.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: ping %s: %w", cfg.Addr, err)
	}
	return conn, nil
}
