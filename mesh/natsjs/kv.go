package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

var _ mesh.KV = (*kvBucket)(nil)

type kvBucket struct {
	eng  *Engine
	name string
	kv   jetstream.KeyValue
}

// KV opens the JetStream key/value bucket named bucket, creating it with
// file storage, history 1 and the engine's replicas if it does not exist.
func (e *Engine) KV(ctx context.Context, bucket string) (mesh.KV, error) {
	if e.closed.Load() {
		return nil, mesh.ErrClosed
	}
	if b, ok := e.buckets.Load(bucket); ok {
		return b.(*kvBucket), nil
	}
	if !mesh.IsToken(bucket, maxStreamName) {
		return nil, fmt.Errorf("opening bucket %q: want letters, digits, '-' and '_'", bucket)
	}
	e.bucketsMu.Lock() // one lookup-or-create per bucket at a time
	defer e.bucketsMu.Unlock()
	if b, ok := e.buckets.Load(bucket); ok {
		return b.(*kvBucket), nil
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "meshd key/value bucket",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    e.cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // created concurrently elsewhere
			kv, err = e.js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening bucket %q: %w", bucket, e.classify(ctx, err))
	}
	b := &kvBucket{eng: e, name: bucket, kv: kv}
	e.buckets.Store(bucket, b)
	return b, nil
}

var _ mesh.BucketChecker = (*Engine)(nil)

// BucketExists says whether the key/value bucket exists, without creating
// it.
func (e *Engine) BucketExists(ctx context.Context, bucket string) (bool, error) {
	if e.closed.Load() {
		return false, mesh.ErrClosed
	}
	if _, ok := e.buckets.Load(bucket); ok {
		return true, nil
	}
	if !mesh.IsToken(bucket, maxStreamName) {
		return false, nil
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	_, err := e.js.KeyValue(ctx, bucket)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("looking up bucket %q: %w", bucket, e.classify(ctx, err))
	}
}

func (b *kvBucket) Get(ctx context.Context, key string) (mesh.Entry, error) {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	en, err := b.kv.Get(ctx, key)
	if err != nil {
		return mesh.Entry{}, b.wrap(ctx, "getting", key, err)
	}
	return mesh.Entry{Key: en.Key(), Value: en.Value(), Revision: en.Revision()}, nil
}

func (b *kvBucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Put(ctx, key, value)
	if err != nil {
		return 0, b.wrap(ctx, "putting", key, err)
	}
	return rev, nil
}

func (b *kvBucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Create(ctx, key, value)
	if err != nil {
		return 0, b.wrap(ctx, "creating", key, err)
	}
	return rev, nil
}

func (b *kvBucket) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Update(ctx, key, value, revision)
	if err != nil {
		return 0, b.wrap(ctx, "updating", key, err)
	}
	return rev, nil
}

func (b *kvBucket) Delete(ctx context.Context, key string) error {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	if err := b.kv.Delete(ctx, key); err != nil {
		return b.wrap(ctx, "deleting", key, err)
	}
	return nil
}

// Keys lists keys with a value that start with prefix. A prefix ending in
// '.' is filtered by the server; others are filtered here.
func (b *kvBucket) Keys(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := b.eng.withTimeout(ctx)
	defer cancel()
	var (
		kl  jetstream.KeyLister
		err error
	)
	if f := keyFilter(prefix); f != jetstream.AllKeys {
		kl, err = b.kv.ListKeysFiltered(ctx, f)
	} else {
		kl, err = b.kv.ListKeys(ctx)
	}
	if err != nil {
		return nil, b.wrap(ctx, "listing", prefix+"*", err)
	}
	defer func() { _ = kl.Stop() }()
	keys := []string{}
	for k := range kl.Keys() {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, b.wrap(ctx, "listing", prefix+"*", err)
	}
	return keys, nil
}

// keyFilter is the subject filter the server applies for prefix: prefix>
// for a prefix that ends a token, else every key (the caller filters).
func keyFilter(prefix string) string {
	if strings.HasSuffix(prefix, ".") && !strings.HasPrefix(prefix, ".") && !strings.Contains(prefix, "..") {
		return prefix + ">"
	}
	return jetstream.AllKeys
}

func (b *kvBucket) wrap(ctx context.Context, what, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		err = mesh.ErrKeyNotFound
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		err = fmt.Errorf("%w: %w", mesh.ErrConflict, err)
	case errors.Is(err, jetstream.ErrInvalidKey):
	default:
		err = b.eng.classify(ctx, err)
	}
	return fmt.Errorf("%s %q in bucket %q: %w", what, key, b.name, err)
}
