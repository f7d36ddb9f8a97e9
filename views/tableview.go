package views

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/rolodex/rolodex/internal/gokaconfig"
	"github.com/rolodex/rolodex/schemas"
)

// tableView is a goka view of another group's table whose values are
// JSON T, kept in a local LevelDB copy: the API reads the tag stage's and
// the lifecycle's tables through it.
type tableView[T any] struct {
	v     *goka.View
	what  string // for errors: "tag view", "message view"
	ready *recoveredOnce
}

func newTableView[T any](brokers []string, table goka.Table, storageDir, clientID, what string, opts ...goka.ViewOption) (*tableView[T], error) {
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}
	sc := gokaconfig.Sarama("rolodex-views")
	base := []goka.ViewOption{
		goka.WithViewStorageBuilder(storage.DefaultBuilder(filepath.Clean(storageDir))),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(sc)),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(sc, gokaconfig.TopicManager(1))),
		goka.WithViewAutoReconnect(),
		goka.WithViewClientID(clientID),
	}
	v, err := goka.NewView(brokers, table, schemas.JSONCodec[T]{}, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("views: %s: %w", what, err)
	}
	return &tableView[T]{v: v, what: what, ready: newRecoveredOnce(v)}, nil
}

// Run keeps the view up to date until ctx is done.
func (v *tableView[T]) Run(ctx context.Context) error {
	if err := v.ready.run(ctx, v.v.Run); err != nil {
		return fmt.Errorf("views: %s: %w", v.what, err)
	}
	return nil
}

// Ready reports whether the view has caught up with the table once (and
// still runs): recoveredOnce.
func (v *tableView[T]) Ready() bool { return v.ready.ready() }

// get returns the value of key, nil if none.
func (v *tableView[T]) get(key string) (*T, error) {
	val, err := v.v.Get(key)
	if err != nil {
		return nil, fmt.Errorf("views: %s: get %s: %w", v.what, key, err)
	}
	if val == nil {
		return nil, nil
	}
	return val.(*T), nil
}
