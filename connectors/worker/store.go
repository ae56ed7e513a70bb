package worker

// Key layout in the mesh KV.
//
// Bucket Options.ConfigBucket (default "meshd-connectors"):
//
//	config.<name>   {"name": <name>, "config": {<field>: <value>, ...}}
//	                the validated config in its JSON form (durations as
//	                strings), secrets included: the bucket is as sensitive
//	                as the config file.
//	state.<name>    {"state": "RUNNING" | "PAUSED"}: the target state the
//	                instance returns to when meshd starts.
//
// Bucket Options.OffsetBucket (default "meshd-offsets"):
//
//	<name>.<partition>  {"partition": <partition>, "offset": <offset>}
//	                    the last committed offset of a source partition;
//	                    <partition> is base64url (no padding) of the
//	                    partition name, so any name fits a KV key.
//
// Connector names are letters, digits, '-' and '_' (no dots), so the prefix
// "<name>." lists exactly one instance's offsets.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/meshd/meshd/mesh"
)

// Default bucket names.
const (
	DefaultConfigBucket = "meshd-connectors"
	DefaultOffsetBucket = "meshd-offsets"
)

const (
	keyConfig = "config."
	keyState  = "state."
)

type storedConfig struct {
	Name   string         `json:"name"`
	Config map[string]any `json:"config"`
}

type storedState struct {
	State State `json:"state"`
}

// Offset is the committed offset of one source partition.
type Offset struct {
	Partition string `json:"partition"`
	Offset    string `json:"offset"`
}

func offsetKey(name, partition string) string {
	return name + "." + base64.RawURLEncoding.EncodeToString([]byte(partition))
}

func (r *Runtime) storeConfig(ctx context.Context, name string, cfg map[string]any, create bool) error {
	data, err := json.Marshal(storedConfig{Name: name, Config: cfg})
	if err != nil {
		return fmt.Errorf("encoding config of %q: %w", name, err)
	}
	if create {
		_, err = r.configs.Create(ctx, keyConfig+name, data)
		if errors.Is(err, mesh.ErrConflict) {
			return fmt.Errorf("%w: %q", ErrExists, name)
		}
	} else {
		_, err = r.configs.Put(ctx, keyConfig+name, data)
	}
	if err != nil {
		return fmt.Errorf("storing config of %q: %w", name, err)
	}
	return nil
}

func (r *Runtime) storeState(ctx context.Context, name string, s State) error {
	data, _ := json.Marshal(storedState{State: s})
	if _, err := r.configs.Put(ctx, keyState+name, data); err != nil {
		return fmt.Errorf("storing state of %q: %w", name, err)
	}
	return nil
}

// loadAll reads every stored instance.
func (r *Runtime) loadAll(ctx context.Context) ([]storedConfig, map[string]State, error) {
	keys, err := r.configs.Keys(ctx, "")
	if err != nil {
		return nil, nil, fmt.Errorf("listing connectors: %w", err)
	}
	var cfgs []storedConfig
	states := map[string]State{}
	for _, k := range keys {
		ent, err := r.configs.Get(ctx, k)
		if errors.Is(err, mesh.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading %q: %w", k, err)
		}
		switch {
		case strings.HasPrefix(k, keyConfig):
			var sc storedConfig
			if err := json.Unmarshal(ent.Value, &sc); err != nil {
				r.log.Error("skipping undecodable stored connector config", "key", k, "error", err)
				continue
			}
			sc.Name = strings.TrimPrefix(k, keyConfig)
			cfgs = append(cfgs, sc)
		case strings.HasPrefix(k, keyState):
			var ss storedState
			if err := json.Unmarshal(ent.Value, &ss); err == nil {
				states[strings.TrimPrefix(k, keyState)] = ss.State
			}
		}
	}
	return cfgs, states, nil
}

// loadOffsets returns the committed offsets of an instance by partition.
func (r *Runtime) loadOffsets(ctx context.Context, name string) (map[string]string, error) {
	keys, err := r.offsets.Keys(ctx, name+".")
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %q: %w", name, err)
	}
	out := map[string]string{}
	for _, k := range keys {
		ent, err := r.offsets.Get(ctx, k)
		if errors.Is(err, mesh.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading offset %q: %w", k, err)
		}
		var o Offset
		if err := json.Unmarshal(ent.Value, &o); err != nil {
			r.log.Warn("skipping undecodable offset", "key", k, "error", err)
			continue
		}
		out[o.Partition] = o.Offset
	}
	return out, nil
}

func (r *Runtime) commitOffsets(ctx context.Context, name string, offsets map[string]string) error {
	for p, o := range offsets {
		data, _ := json.Marshal(Offset{Partition: p, Offset: o})
		if _, err := r.offsets.Put(ctx, offsetKey(name, p), data); err != nil {
			return fmt.Errorf("committing offset of %q partition %q: %w", name, p, err)
		}
	}
	return nil
}

// deleteStored removes an instance's config, state and offsets.
func (r *Runtime) deleteStored(ctx context.Context, name string) error {
	var errs []error
	errs = append(errs, r.configs.Delete(ctx, keyConfig+name), r.configs.Delete(ctx, keyState+name))
	keys, err := r.offsets.Keys(ctx, name+".")
	errs = append(errs, err)
	for _, k := range keys {
		errs = append(errs, r.offsets.Delete(ctx, k))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting stored connector %q: %w", name, err)
	}
	return nil
}
