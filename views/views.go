// Package views serves profiles read-only: a goka view of the identity
// table and the HTTP query API on top of it.
package views

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/schemas"
)

// ErrNotFound says no profile matched.
var ErrNotFound = errors.New("views: profile not found")

// ErrNotReady says the view is still loading the table.
var ErrNotReady = errors.New("views: the profile view is still loading")

// Nodes reads identity nodes by node id.
type Nodes interface {
	Node(key string) (*schemas.Node, error)
	Ready() bool
	// Scan calls fn with every node whose id sorts after after ("" for
	// the first), in id order, until fn returns false or the nodes end.
	// Node ids are hashes, so the nodes of one tenant are spread over the
	// whole range: a scan for one tenant reads the others' too.
	Scan(after string, fn func(key string, n *schemas.Node) bool) error
}

// maxHops bounds a walk up the parents (each hop goes to a strictly smaller
// node, so a walk always ends; this only guards against corrupt data).
const maxHops = 1024

// Resolve returns the live profile that node key belongs to, in tenant,
// folded with no status configuration (no default tags or groups).
// A node of another tenant is not found: nothing crosses tenants.
func Resolve(nodes Nodes, tenant, key string) (*schemas.Profile, error) {
	return ResolveWith(nodes, tenant, key, &schemas.FoldOptions{})
}

// ResolveWith is Resolve folding with opts (the configured default tags and
// tag groups).
func ResolveWith(nodes Nodes, tenant, key string, opts *schemas.FoldOptions) (*schemas.Profile, error) {
	if !nodes.Ready() {
		return nil, ErrNotReady
	}
	for i := 0; i < maxHops; i++ {
		n, err := nodes.Node(key)
		if err != nil {
			return nil, err
		}
		if n == nil || n.Tenant != tenant {
			return nil, ErrNotFound
		}
		if n.IsRoot() {
			return schemas.FoldWith(key, n, opts), nil
		}
		key = n.Parent
	}
	return nil, fmt.Errorf("views: parent chain of %s is longer than %d", key, maxHops)
}

// View is a goka view of the identity table.
type View struct {
	v     *goka.View
	ready *recoveredOnce
}

// NewView opens a view of the identity table; storageDir keeps its local
// copy (LevelDB), so restarts only catch up.
func NewView(brokers []string, storageDir string, opts ...goka.ViewOption) (*View, error) {
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	sc := gokaconfig.Sarama("rolodex-views")
	tmc := gokaconfig.TopicManager(1)
	base := []goka.ViewOption{
		goka.WithViewStorageBuilder(storage.DefaultBuilder(filepath.Clean(storageDir))),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, tmc)),
		goka.WithViewAutoReconnect(),
		goka.WithViewClientID("rolodex-views"),
	}
	v, err := goka.NewView(brokers, goka.GroupTable(schemas.GroupIdentity), schemas.JSONCodec[schemas.Node]{}, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	return &View{v: v, ready: newRecoveredOnce(v)}, nil
}

// Run keeps the view up to date until ctx is done.
func (v *View) Run(ctx context.Context) error {
	if err := v.ready.run(ctx, v.v.Run); err != nil {
		return fmt.Errorf("views: %w", err)
	}
	return nil
}

// Ready reports whether the view has caught up with the table once (and
// still runs): recoveredOnce.
func (v *View) Ready() bool { return v.ready.ready() }

// Node returns the node with that id, nil if none.
func (v *View) Node(key string) (*schemas.Node, error) {
	val, err := v.v.Get(key)
	if err != nil {
		return nil, fmt.Errorf("views: get %s: %w", key, err)
	}
	if val == nil {
		return nil, nil
	}
	return val.(*schemas.Node), nil
}

// Scan calls fn with every node whose id sorts after after, in id order
// (goka merges the partitions' LevelDB iterators in key order), until fn
// returns false.
func (v *View) Scan(after string, fn func(key string, n *schemas.Node) bool) error {
	start := ""
	if after != "" {
		start = after + "\x00" // the first key after after
	}
	// A limit is required: without one goka reads start as a prefix. Every
	// node id starts with "p_", below 0xff.
	it, err := v.v.IteratorWithRange(start, "\xff")
	if err != nil {
		return fmt.Errorf("views: scan: %w", err)
	}
	defer it.Release()
	for it.Next() {
		val, err := it.Value()
		if err != nil {
			return fmt.Errorf("views: scan %s: %w", it.Key(), err)
		}
		if val == nil {
			continue
		}
		if !fn(it.Key(), val.(*schemas.Node)) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("views: scan: %w", err)
	}
	return nil
}
