package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/cloudevents/sdk-go/v2/event"
)

// Metadata s3-sink gives each object it writes (x-amz-meta-*).
const (
	metaSet     = "meshd-set"
	metaFirst   = "meshd-first"
	metaLast    = "meshd-last"
	metaCount   = "meshd-count"
	metaFirstID = "meshd-first-id"
)

// maxCachedManifests bounds the manifests an index keeps in memory.
const maxCachedManifests = 10_000

// index is the exactly-once index of one s3-sink instance: one manifest
// per object under <index.prefix><connector>/, named
// <last>-<first>-<set> (20-digit mesh sequences; set: a hash of the
// object's events) and holding the object's key, its sequences and the
// identity (source and id) of the event of each.
//
// A manifest is written before its object, and the object carries the set
// hash in its metadata; so an object is complete and holds a manifest's
// events exactly when the manifest is listed and the object's metadata
// names the same set. The mesh may redeliver events in any batches (after
// a crash, a lost ack, a retry of a failed Put); each Put asks the index
// which of its events complete objects hold already — same sequence, same
// identity — and writes only the others.
type index struct {
	client *s3.Client
	bucket string
	prefix string // <index.prefix><connector>/

	mu        sync.Mutex
	manifests map[string]*manifest // by name; manifests never change
}

type manifest struct {
	Key    string      `json:"key"`
	Set    string      `json:"set"`
	Ranges [][2]uint64 `json:"ranges"` // runs of consecutive sequences, ascending
	// IDs holds the identity (idHash) of the event of each sequence, in
	// ascending order of sequence, 8 bytes each.
	IDs       []byte `json:"ids"`
	confirmed bool   // the object is complete
	starts    []int  // the position in IDs (in events) of each range's first sequence
}

// identity returns the identity of the event of seq in the object, or
// false when the object does not hold seq.
func (m *manifest) identity(seq uint64) (uint64, bool) {
	i := sort.Search(len(m.Ranges), func(i int) bool { return m.Ranges[i][1] >= seq })
	if i == len(m.Ranges) || m.Ranges[i][0] > seq {
		return 0, false
	}
	at := (m.starts[i] + int(seq-m.Ranges[i][0])) * 8
	return binary.BigEndian.Uint64(m.IDs[at:]), true
}

// prepare fills starts and reports whether the manifest is whole.
func (m *manifest) prepare() bool {
	m.starts = make([]int, len(m.Ranges))
	n := 0
	for i, r := range m.Ranges {
		if r[0] > r[1] || i > 0 && r[0] <= m.Ranges[i-1][1] {
			return false
		}
		m.starts[i] = n
		n += int(r[1]-r[0]) + 1
	}
	return len(m.IDs) == 8*n
}

// idHash is an event's identity in the index: the mesh tells events apart
// by source and id. Sequences alone are not enough: a mesh whose store was
// lost, or another meshd writing with the same connector name (the
// sidecars of an app's replicas), numbers other events the same.
func idHash(e *event.Event) uint64 {
	h := fnv.New64a()
	h.Write([]byte(e.Source()))
	h.Write([]byte{0})
	h.Write([]byte(e.ID()))
	return h.Sum64()
}

// setHash identifies the events of an object: their sequences and
// identities, ascending by sequence.
func setHash(seqs, ids []uint64) string {
	h := sha256.New()
	var b [16]byte
	for i, s := range seqs {
		binary.BigEndian.PutUint64(b[:8], s)
		binary.BigEndian.PutUint64(b[8:], ids[i])
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ranges returns seqs (sorted, unique) as runs of consecutive numbers.
func ranges(seqs []uint64) [][2]uint64 {
	var out [][2]uint64
	for _, s := range seqs {
		if n := len(out); n > 0 && out[n-1][1]+1 == s {
			out[n-1][1] = s
			continue
		}
		out = append(out, [2]uint64{s, s})
	}
	return out
}

func packIDs(ids []uint64) []byte {
	out := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.BigEndian.PutUint64(out[8*i:], id)
	}
	return out
}

// stored returns the sequences of seqs (sorted, unique, not empty; ids:
// the identity of the event of each) that complete objects hold.
func (x *index) stored(ctx context.Context, seqs, ids []uint64) (map[uint64]bool, error) {
	lo, hi := seqs[0], seqs[len(seqs)-1]
	out := map[uint64]bool{}
	// Names sort by last sequence: those after lo's are the manifests
	// whose objects may hold lo or a later sequence.
	err := x.list(ctx, x.prefix+padSeq(lo), func(o types.Object) error {
		name := aws.ToString(o.Key)[len(x.prefix):]
		first, last, _, ok := parseManifestName(name)
		if !ok || first > hi {
			return nil
		}
		from := sort.Search(len(seqs), func(i int) bool { return seqs[i] >= first })
		to := sort.Search(len(seqs), func(i int) bool { return seqs[i] > last })
		if from == to {
			return nil
		}
		m, err := x.manifest(ctx, name)
		if err != nil || m == nil {
			return err
		}
		var hits []uint64
		for i := from; i < to; i++ {
			if id, ok := m.identity(seqs[i]); ok && id == ids[i] {
				hits = append(hits, seqs[i])
			}
		}
		if len(hits) == 0 {
			return nil
		}
		complete, err := x.confirm(ctx, m)
		if err != nil || !complete {
			return err
		}
		for _, s := range hits {
			out[s] = true
		}
		return nil
	})
	return out, err
}

// list calls f with each key under the index prefix after startAfter, in
// order.
func (x *index) list(ctx context.Context, startAfter string, f func(types.Object) error) error {
	in := &s3.ListObjectsV2Input{Bucket: &x.bucket, Prefix: &x.prefix}
	if startAfter != "" {
		in.StartAfter = &startAfter
	}
	for {
		out, err := x.client.ListObjectsV2(ctx, in)
		if err != nil {
			return fmt.Errorf("listing the index %q: %w", x.prefix, err)
		}
		for _, o := range out.Contents {
			if err := f(o); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			return nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// manifest returns a manifest by name, nil if it is gone or not one.
func (x *index) manifest(ctx context.Context, name string) (*manifest, error) {
	x.mu.Lock()
	m := x.manifests[name]
	x.mu.Unlock()
	if m != nil {
		return m, nil
	}
	key := x.prefix + name
	out, err := x.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &x.bucket, Key: &key})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the manifest %q: %w", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest %q: %w", key, err)
	}
	m = &manifest{}
	if json.Unmarshal(b, m) != nil || !m.prepare() {
		return nil, nil // not a manifest of ours: nothing to learn from it
	}
	x.remember(name, m)
	return m, nil
}

func (x *index) remember(name string, m *manifest) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.manifests) >= maxCachedManifests {
		clear(x.manifests)
	}
	x.manifests[name] = m
}

// confirm reports whether m's object is complete with m's events.
func (x *index) confirm(ctx context.Context, m *manifest) (bool, error) {
	x.mu.Lock()
	done := m.confirmed
	x.mu.Unlock()
	if done {
		return true, nil
	}
	h, err := x.head(ctx, m.Key)
	if err != nil || h.set != m.Set {
		return false, err
	}
	x.mu.Lock()
	m.confirmed = true
	x.mu.Unlock()
	return true, nil
}

// holder is what an object's metadata says of the events it holds.
type holder struct {
	found   bool
	set     string // setHash of its events
	firstID string // identity of its first event, hex
}

// head reads the metadata of the object key.
func (x *index) head(ctx context.Context, key string) (holder, error) {
	out, err := x.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &x.bucket, Key: &key})
	if isNotFound(err) {
		return holder{}, nil // not written, or being written
	}
	if err != nil {
		return holder{}, fmt.Errorf("checking the object %q: %w", key, err)
	}
	return holder{found: true, set: out.Metadata[metaSet], firstID: out.Metadata[metaFirstID]}, nil
}

// add writes the manifest of an object, before the object.
func (x *index) add(ctx context.Context, key string, seqs, ids []uint64, set string) error {
	m := &manifest{Key: key, Set: set, Ranges: ranges(seqs), IDs: packIDs(ids)}
	m.prepare()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	name := manifestName(seqs[0], seqs[len(seqs)-1], set)
	mkey := x.prefix + name
	if _, err := x.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &x.bucket, Key: &mkey, Body: bytes.NewReader(b), ContentType: aws.String("application/json"),
	}); err != nil {
		return fmt.Errorf("writing the manifest %q: %w", mkey, err)
	}
	x.remember(name, m)
	return nil
}

// markComplete records that the object of a manifest is complete.
func (x *index) markComplete(seqs []uint64, set string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if m := x.manifests[manifestName(seqs[0], seqs[len(seqs)-1], set)]; m != nil {
		m.confirmed = true
	}
}

// sweep deletes the manifests older than retention.
func (x *index) sweep(ctx context.Context, retention time.Duration) (int, error) {
	cutoff := time.Now().Add(-retention)
	var old []types.ObjectIdentifier
	deleted := 0
	flush := func() error {
		if len(old) == 0 {
			return nil
		}
		out, err := x.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &x.bucket, Delete: &types.Delete{Objects: old, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("deleting old manifests: %w", err)
		}
		deleted += len(old) - len(out.Errors)
		old = old[:0]
		return nil
	}
	err := x.list(ctx, "", func(o types.Object) error {
		if o.LastModified == nil || o.LastModified.After(cutoff) {
			return nil
		}
		old = append(old, types.ObjectIdentifier{Key: o.Key})
		if len(old) == 1000 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return deleted, err
}

func metadata(seqs, ids []uint64, set string) map[string]string {
	return map[string]string{
		metaSet:     set,
		metaFirst:   strconv.FormatUint(seqs[0], 10),
		metaLast:    strconv.FormatUint(seqs[len(seqs)-1], 10),
		metaCount:   strconv.Itoa(len(seqs)),
		metaFirstID: strconv.FormatUint(ids[0], 16),
	}
}
