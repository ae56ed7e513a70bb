package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
)

// The config file declares subscriptions and connectors; the API creates
// others. Both kinds live in the same stores (the bridge's and the
// connector runtime's), which do not record where an item came from. So
// the sidecar keeps, in a bucket of its own, the names the file declared
// at the last start: what was declared then and is not now was removed
// from the file, and is removed from the mesh; what the API created is
// never in that list and is kept.
const (
	declaredBucketBase = "meshd-declared"
	declaredKey        = "declared"
)

// declaredState is the value of declaredKey.
type declaredState struct {
	Subscriptions []string `json:"subscriptions"`
	Connectors    []string `json:"connectors"`
}

func (c *Config) declared() declaredState {
	var d declaredState
	for _, s := range c.Subscriptions {
		d.Subscriptions = append(d.Subscriptions, s.ID)
	}
	for _, cc := range c.Connectors {
		d.Connectors = append(d.Connectors, cc.Name)
	}
	return d
}

// applyDeclared brings the mesh to the declared state: removes what the
// file declared at the last start and no longer does, then creates or
// updates what it declares now. Crash-safe: the union of both lists is
// recorded before anything changes, so a removal cannot be forgotten.
func (s *Sidecar) applyDeclared(ctx context.Context) error {
	kv, err := s.engine.KV(ctx, s.cfg.stateBucket(declaredBucketBase))
	if err != nil {
		return fmt.Errorf("opening the record of declared subscriptions and connectors: %w", err)
	}
	prev, err := loadDeclared(ctx, kv)
	if err != nil {
		return err
	}
	now := s.cfg.declared()
	union := declaredState{
		Subscriptions: unionOf(prev.Subscriptions, now.Subscriptions),
		Connectors:    unionOf(prev.Connectors, now.Connectors),
	}
	if err := storeDeclared(ctx, kv, union); err != nil {
		return err
	}
	if err := s.removeUndeclared(ctx, "subscription", prev.Subscriptions, now.Subscriptions, s.bridge.DeleteSubscription, bridge.ErrSubscriptionNotFound); err != nil {
		return err
	}
	if err := s.removeUndeclared(ctx, "connector", prev.Connectors, now.Connectors, s.connectors.Delete, worker.ErrNotFound); err != nil {
		return err
	}
	for i, sub := range s.cfg.Subscriptions {
		if old, err := s.bridge.GetSubscription(ctx, sub.ID); err == nil && old.Paused {
			sub.Paused = true // paused through the admin API: stays so until resumed there
		}
		if _, err := s.bridge.PutSubscription(ctx, sub); err != nil {
			return fmt.Errorf("subscriptions[%d] (subscription %q): %w", i, sub.ID, err)
		}
	}
	for i, cc := range s.cfg.Connectors {
		if err := putDeclaredConnector(ctx, s.connectors, cc); err != nil {
			return declaredConnectorError(i, cc.Name, err)
		}
	}
	return storeDeclared(ctx, kv, now)
}

// putDeclaredConnector puts a declared connector, again when another
// sidecar of the app (starting with the same file) changed it meanwhile:
// the runtime caught up with that change, and the declared config goes on
// top of it.
func putDeclaredConnector(ctx context.Context, rt *worker.Runtime, cc ConnectorConfig) error {
	const attempts = 5
	for i := 1; ; i++ {
		_, _, err := rt.Put(ctx, cc.Name, cc.Config)
		if !errors.Is(err, worker.ErrConflict) || i == attempts {
			return err
		}
	}
}

// removeUndeclared deletes the items of kind that were declared (prev) and
// are not now; one already gone (notFound) is fine.
func (s *Sidecar) removeUndeclared(ctx context.Context, kind string, prev, now []string, del func(context.Context, string) error, notFound error) error {
	for _, name := range prev {
		if slices.Contains(now, name) {
			continue
		}
		err := del(ctx, name)
		switch {
		case err == nil:
			s.logger.Info(kind+" removed: no longer declared in the config file", kind, name)
		case !errors.Is(err, notFound):
			return fmt.Errorf("removing %s %q, no longer in the config file: %w", kind, name, err)
		}
	}
	return nil
}

func loadDeclared(ctx context.Context, kv mesh.KV) (declaredState, error) {
	var d declaredState
	e, err := kv.Get(ctx, declaredKey)
	if errors.Is(err, mesh.ErrKeyNotFound) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("reading the record of declared subscriptions and connectors: %w", err)
	}
	if err := json.Unmarshal(e.Value, &d); err != nil {
		return d, fmt.Errorf("reading the record of declared subscriptions and connectors: %w", err)
	}
	return d, nil
}

func storeDeclared(ctx context.Context, kv mesh.KV, d declaredState) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, declaredKey, b); err != nil {
		return fmt.Errorf("recording the declared subscriptions and connectors: %w", err)
	}
	return nil
}

// unionOf is a followed by the elements of b not in a.
func unionOf(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// validateDeclared checks each declared subscription and connector config
// as the API would, naming the item and field: subscriptions[0].sink,
// connectors[1].config.url.
func (c *Config) validateDeclared() error {
	seen := map[string]bool{}
	for i, s := range c.Subscriptions {
		if s.ID == "" {
			return fmt.Errorf("subscriptions[%d].id: required", i)
		}
		if seen[s.ID] {
			return fmt.Errorf("subscriptions[%d].id: %q declared twice", i, s.ID)
		}
		seen[s.ID] = true
		if _, err := bridge.ValidateSubscription(s); err != nil {
			detail := strings.TrimPrefix(err.Error(), bridge.ErrInvalidSubscription.Error()+": ")
			return fmt.Errorf("subscriptions[%d].%s (subscription %q)", i, detail, s.ID)
		}
		if strings.HasPrefix(s.Sink, "/") && !strings.HasPrefix(s.Sink, "//") && c.App.Port == 0 {
			return fmt.Errorf("subscriptions[%d].sink: a path is delivered to the app next to meshd; set app.port or give a URL (subscription %q)", i, s.ID)
		}
	}
	for i, cc := range c.Connectors {
		if cc.Config == nil {
			continue // validateConnectors names it
		}
		if _, _, err := connectors.Default().Validate(cc.Config); err != nil {
			return declaredConnectorError(i, cc.Name, err)
		}
	}
	return nil
}

// declaredConnectorError names the fields of connectors[i] that err (from
// validating or applying it) found bad: connectors[1].config.url,
// connectors[1].name.
func declaredConnectorError(i int, name string, err error) error {
	var bad *connectors.ValidationError
	if !errors.As(err, &bad) {
		return fmt.Errorf("connectors[%d]: %w (connector %q)", i, err, name)
	}
	parts := make([]string, len(bad.Fields))
	for j, f := range bad.Fields {
		path := fmt.Sprintf("connectors[%d].config.%s", i, f.Field)
		if f.Field == "name" {
			path = fmt.Sprintf("connectors[%d].name", i)
		}
		parts[j] = path + ": " + f.Reason
	}
	return fmt.Errorf("%s (connector %q)", strings.Join(parts, "; "), name)
}

// noteMovedState warns, on the first start after the upgrade, an app whose
// id earlier versions mapped onto the buckets of other ids (legacyStateBucket)
// that its subscriptions and connectors are no longer read from there.
// Nothing is copied: the old buckets may hold another app's state too.
func (s *Sidecar) noteMovedState(ctx context.Context) {
	bases := []string{bridge.DefaultSubscriptionBucket, worker.DefaultConfigBucket}
	if s.cfg.stateBucket(bases[0]) == s.cfg.legacyStateBucket(bases[0]) {
		return // the common case: the buckets did not move
	}
	bc, ok := s.engine.(mesh.BucketChecker)
	if !ok {
		return
	}
	for _, base := range bases {
		now, old := s.cfg.stateBucket(base), s.cfg.legacyStateBucket(base)
		oldExists, err := bc.BucketExists(ctx, old)
		if err != nil || !oldExists {
			continue
		}
		if nowExists, err := bc.BucketExists(ctx, now); err != nil || nowExists {
			continue
		}
		s.logger.Warn("this app's state is kept in a new bucket; the old one is left as it was",
			"app", s.cfg.App.ID, "bucket", now, "old_bucket", old,
			"hint", "app ids with characters other than letters, digits, '-' and '_' shared buckets with other ids before; "+
				"the subscriptions and connectors of the config file are created again, create those made through the API again")
	}
}
