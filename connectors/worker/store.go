package worker

// Key layout in the mesh KV.
//
// Bucket Options.ConfigBucket (default "meshd-connectors"):
//
//	config.<name>   {"name": <name>, "config": {<field>: <value>, ...},
//	                 "sealed": {"alg": "AES-256-GCM", "kid": <key id>, "data": <base64>}}
//	                the validated config in its JSON form (durations as
//	                strings) without its secret fields, which are in
//	                "sealed": their JSON object encrypted with AES-256-GCM
//	                (nonce first, the key "connector config <name>" as
//	                additional data, so a sealed blob cannot be moved to
//	                another connector). kid is the first 8 hex digits of
//	                the SHA-256 of the key that sealed it. Without
//	                Options.SecretsKey, and in what older versions wrote,
//	                secrets are in "config" in clear; Start re-writes such
//	                a config sealed.
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
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/meshd/meshd/connectors"
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
	// Sealed holds the secret fields, encrypted; Config lacks them.
	Sealed *sealed `json:"sealed,omitempty"`
	// unreadable says why Sealed could not be opened (not stored).
	unreadable error
	// rev is the revision it was read at (not stored).
	rev uint64
}

type sealed struct {
	Alg   string `json:"alg"`
	KeyID string `json:"kid"`
	Data  string `json:"data"`
}

// sealAlg is the one algorithm of sealed secrets.
const sealAlg = "AES-256-GCM"

// secretBox seals and opens the secret fields of configs with the key of
// Options.SecretsKey, asked for when first needed.
type secretBox struct {
	keyFn func() ([]byte, error)

	mu   sync.Mutex // guards aead and kid
	aead cipher.AEAD
	kid  string
}

// cipher returns the AEAD and key id, reading the key on first use. ok is
// false when there is no key (secrets are stored in clear).
func (b *secretBox) cipher() (aead cipher.AEAD, kid string, ok bool, err error) {
	if b == nil || b.keyFn == nil {
		return nil, "", false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.aead == nil {
		key, err := b.keyFn()
		if err != nil {
			return nil, "", false, fmt.Errorf("reading the key of connector secrets: %w", err)
		}
		if len(key) != 32 {
			return nil, "", false, fmt.Errorf("the key of connector secrets has %d bytes, want 32", len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, "", false, err
		}
		if b.aead, err = cipher.NewGCM(block); err != nil {
			return nil, "", false, err
		}
		sum := sha256.Sum256(key)
		b.kid = hex.EncodeToString(sum[:4])
	}
	return b.aead, b.kid, true, nil
}

func sealAD(name string) []byte { return []byte("connector config " + name) }

// secretValues returns the non-empty secret fields of cfg, by the spec of
// its connector type (none when the type is unknown).
func (r *Runtime) secretValues(cfg map[string]any) map[string]any {
	typ, _ := cfg[connectors.FieldConnectorType].(string)
	spec, ok := r.registry.Lookup(typ)
	if !ok {
		return nil
	}
	out := map[string]any{}
	for _, f := range spec.AllFields() {
		if v, found := cfg[f.Name]; found && f.Secret && !isZeroSecret(v) {
			out[f.Name] = v
		}
	}
	return out
}

// encodeConfig is the stored form of cfg: its secret fields sealed when
// there is a key.
func (r *Runtime) encodeConfig(name string, cfg map[string]any) ([]byte, error) {
	sc := storedConfig{Name: name, Config: cfg}
	if secrets := r.secretValues(cfg); len(secrets) > 0 {
		aead, kid, ok, err := r.secrets.cipher()
		if err != nil {
			return nil, fmt.Errorf("encrypting the secrets of %q: %w", name, err)
		}
		if ok {
			if sc.Sealed, err = seal(aead, kid, name, secrets); err != nil {
				return nil, fmt.Errorf("encrypting the secrets of %q: %w", name, err)
			}
			sc.Config = maps.Clone(cfg)
			for f := range secrets {
				delete(sc.Config, f)
			}
		}
	}
	data, err := json.Marshal(sc)
	if err != nil {
		return nil, fmt.Errorf("encoding config of %q: %w", name, err)
	}
	return data, nil
}

func seal(aead cipher.AEAD, kid, name string, secrets map[string]any) (*sealed, error) {
	plain, err := json.Marshal(secrets)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &sealed{Alg: sealAlg, KeyID: kid, Data: base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, sealAD(name)))}, nil
}

// open returns the secrets sealed in s for the connector name.
func (s *sealed) open(aead cipher.AEAD, name string) (map[string]any, error) {
	if s.Alg != sealAlg {
		return nil, fmt.Errorf("encrypted with %q, which this version does not know", s.Alg)
	}
	raw, err := base64.StdEncoding.DecodeString(s.Data)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(raw) < n {
		return nil, errors.New("too short")
	}
	plain, err := aead.Open(nil, raw[:n], raw[n:], sealAD(name))
	if err != nil {
		return nil, err
	}
	var secrets map[string]any
	return secrets, json.Unmarshal(plain, &secrets)
}

// decodeConfig reads a stored config of name, opening its sealed secrets.
// A config whose secrets cannot be opened (another key) comes back with
// unreadable set and without them. clear reports a config that holds
// secret values in clear although there is a key: it should be re-written.
func (r *Runtime) decodeConfig(name string, data []byte) (sc storedConfig, clear bool, err error) {
	if err := json.Unmarshal(data, &sc); err != nil {
		return sc, false, err
	}
	sc.Name = name
	if sc.Config == nil {
		sc.Config = map[string]any{}
	}
	if sc.Sealed == nil {
		if len(r.secretValues(sc.Config)) == 0 {
			return sc, false, nil
		}
		_, _, ok, err := r.secrets.cipher()
		return sc, ok && err == nil, nil
	}
	aead, kid, ok, err := r.secrets.cipher()
	switch {
	case err != nil:
		sc.unreadable = fmt.Errorf("its stored secrets cannot be decrypted: %w", err)
	case !ok:
		sc.unreadable = errors.New("its stored secrets are encrypted and this runtime has no key to decrypt them")
	default:
		secrets, oerr := sc.Sealed.open(aead, name)
		if oerr != nil {
			sc.unreadable = fmt.Errorf("its stored secrets cannot be decrypted with this sidecar's key (id %s; they were encrypted with key id %s): "+
				"give it the key of the sidecar that stored them (meshd's secrets.key), or put the config again with its secrets", kid, sc.Sealed.KeyID)
			break
		}
		maps.Copy(sc.Config, secrets)
	}
	return sc, false, nil
}

// isZeroSecret says whether a secret field's value holds nothing to hide.
func isZeroSecret(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case map[string]any:
		return len(x) == 0
	case map[string]string:
		return len(x) == 0
	}
	return false
}

type storedState struct {
	State State  `json:"state"`
	rev   uint64 // the revision it was read at (not stored)
}

// Offset is the committed offset of one source partition.
type Offset struct {
	Partition string `json:"partition"`
	Offset    string `json:"offset"`
}

func offsetKey(name, partition string) string {
	return name + "." + base64.RawURLEncoding.EncodeToString([]byte(partition))
}

// storeConfig stores cfg as name's config and returns its revision:
// created (ErrExists when it is), or replaced at revision rev (ErrConflict
// when another change came first; 0: whatever is stored).
func (r *Runtime) storeConfig(ctx context.Context, name string, cfg map[string]any, create bool, rev uint64) (uint64, error) {
	data, err := r.encodeConfig(name, cfg)
	if err != nil {
		return 0, err
	}
	switch {
	case create:
		rev, err = r.configs.Create(ctx, keyConfig+name, data)
		if errors.Is(err, mesh.ErrConflict) {
			return 0, fmt.Errorf("%w: %q", ErrExists, name)
		}
	case rev > 0:
		rev, err = r.configs.Update(ctx, keyConfig+name, data, rev)
	default:
		rev, err = r.configs.Put(ctx, keyConfig+name, data)
	}
	if errors.Is(err, mesh.ErrConflict) {
		return 0, fmt.Errorf("%w: the config of %q", ErrConflict, name)
	}
	if err != nil {
		return 0, fmt.Errorf("storing config of %q: %w", name, err)
	}
	return rev, nil
}

// storeState stores name's target state at revision rev (ErrConflict when
// another change came first; 0: whatever is stored) and returns its new
// revision.
func (r *Runtime) storeState(ctx context.Context, name string, s State, rev uint64) (uint64, error) {
	data, _ := json.Marshal(storedState{State: s})
	var err error
	if rev > 0 {
		rev, err = r.configs.Update(ctx, keyState+name, data, rev)
	} else {
		rev, err = r.configs.Put(ctx, keyState+name, data)
	}
	if errors.Is(err, mesh.ErrConflict) {
		return 0, fmt.Errorf("%w: the state of %q", ErrConflict, name)
	}
	if err != nil {
		return 0, fmt.Errorf("storing state of %q: %w", name, err)
	}
	return rev, nil
}

// loadAll reads every stored instance, re-writing with sealed secrets the
// configs stored with secrets in clear.
func (r *Runtime) loadAll(ctx context.Context) ([]storedConfig, map[string]storedState, error) {
	keys, err := r.configs.Keys(ctx, "")
	if err != nil {
		return nil, nil, fmt.Errorf("listing connectors: %w", err)
	}
	var cfgs []storedConfig
	states := map[string]storedState{}
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
			name := strings.TrimPrefix(k, keyConfig)
			sc, clear, err := r.decodeConfig(name, ent.Value)
			if err != nil {
				r.log.Error("skipping undecodable stored connector config", "key", k, "error", err)
				continue
			}
			sc.rev = ent.Revision
			if clear {
				sc.rev = r.reseal(ctx, k, sc, ent.Revision)
			}
			cfgs = append(cfgs, sc)
		case strings.HasPrefix(k, keyState):
			var ss storedState
			if err := json.Unmarshal(ent.Value, &ss); err == nil {
				ss.rev = ent.Revision
				states[strings.TrimPrefix(k, keyState)] = ss
			}
		}
	}
	return cfgs, states, nil
}

// reseal re-writes a config stored with its secrets in clear (by an older
// version, or before a key was set) with them sealed, unless it changed
// since it was read. It returns the config's revision then.
func (r *Runtime) reseal(ctx context.Context, key string, sc storedConfig, revision uint64) uint64 {
	data, err := r.encodeConfig(sc.Name, sc.Config)
	var rev uint64
	if err == nil {
		rev, err = r.configs.Update(ctx, key, data, revision)
	}
	if err != nil {
		r.log.Warn("connector config stays stored with its secrets in clear", "connector", sc.Name, "error", err)
		return revision
	}
	r.log.Info("connector config re-stored with its secrets encrypted", "connector", sc.Name)
	return rev
}

// unreadableInstance is a stored instance whose secrets cannot be
// decrypted: it does not run, and its status says why.
func (r *Runtime) unreadableInstance(sc storedConfig) *instance {
	inst := &instance{name: sc.Name, raw: sc.Config, target: StateRunning, log: r.log.With("connector", sc.Name)}
	inst.conn.State = StateUnassigned
	if typ, _ := sc.Config[connectors.FieldConnectorType].(string); typ != "" {
		inst.spec, _ = r.registry.Lookup(typ)
	}
	inst.invalid = fmt.Errorf("stored config cannot run: %w", sc.unreadable)
	inst.log.Error("not starting connector", "error", sc.unreadable)
	return inst
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
