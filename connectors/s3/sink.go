package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.PositionedSink = (*SinkTask)(nil)
	_ connectors.Initializer    = (*SinkTask)(nil)
)

// Housekeeping of the first task of an instance: manifests past
// index.retention and multipart uploads left open by a crash (older than
// staleUpload; no Put lasts that long) are removed at start and then every
// sweepEvery.
const (
	sweepEvery  = time.Hour
	staleUpload = time.Hour
)

// Why an object cannot be written at a key: errTaken, the key holds an
// object whose first event is this object's first (the index did not
// know it: its manifest expired); errOccupied, the key holds an object of
// other events (another mesh numbered them the same).
var (
	errTaken    = errors.New("the key holds an object with this object's first event")
	errOccupied = errors.New("the key holds an object of other events")
)

// SinkTask writes the events of each Put as one object per key group
// (topic and time partition), or more when flush.size or flush.count
// closes one; the runtime acks the events once Put returned, so every
// event it acks is in a complete object. See index for how a redelivered
// event already in the bucket is told apart.
type SinkTask struct {
	client        *s3.Client
	bucket        string
	tmpl          *keyTemplate
	pattern       *regexp.Regexp // keys tmpl makes
	format        string
	compression   string
	ext           string
	partitionTime string
	flushSize     int
	flushCount    int
	partSize      int
	concurrency   int
	retention     time.Duration
	index         *index

	connector string
	taskID    int
	log       *slog.Logger

	// Buffers kept from Put to Put (Puts never overlap): the records of
	// each encoding chunk, and the object being uploaded.
	encodeBufs []*bytes.Buffer
	objectBuf  bytes.Buffer

	stopSweep context.CancelFunc
	sweeping  sync.WaitGroup

	// Set by tests: the requests' HTTP client, and the age of a stale
	// multipart upload (default staleUpload).
	httpClient aws.HTTPClient
	staleAfter time.Duration
}

// Init takes the instance name (the index is per instance) and logger.
func (t *SinkTask) Init(tc connectors.TaskContext) {
	t.connector, t.taskID, t.log = tc.Connector(), tc.TaskID(), tc.Logger()
}

// Start makes the client and checks the bucket answers.
func (t *SinkTask) Start(ctx context.Context, cfg connectors.Config) error {
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.connector == "" {
		t.connector = "s3-sink"
	}
	tmpl, err := parseTemplate(cfg.String(FieldKeyTemplate))
	if err != nil {
		return fmt.Errorf("%s: %w", FieldKeyTemplate, err)
	}
	client, err := newClient(ctx, cfg, t.httpClient)
	if err != nil {
		return err
	}
	t.client, t.bucket, t.tmpl, t.pattern = client, cfg.String(FieldBucket), tmpl, tmpl.pattern()
	t.format, t.compression = cfg.String(FieldFormat), cfg.String(FieldCompression)
	t.ext = extension(t.format, t.compression)
	t.partitionTime = cfg.String(FieldPartitionTime)
	t.flushSize, t.flushCount = int(cfg.Int(FieldFlushSize)), int(cfg.Int(FieldFlushCount))
	t.partSize, t.concurrency = int(cfg.Int(FieldPartSize)), int(cfg.Int(FieldUploadParallel))
	t.retention = cfg.Duration(FieldIndexRetention)
	if t.flushCount == 0 {
		t.flushCount = int(cfg.Int(connectors.FieldBatchSize))
	}
	t.encodeBufs = make([]*bytes.Buffer, runtime.GOMAXPROCS(0))
	for i := range t.encodeBufs {
		t.encodeBufs[i] = &bytes.Buffer{}
	}
	t.index = &index{client: client, bucket: t.bucket, prefix: cfg.String(FieldIndexPrefix) + t.connector + "/", manifests: map[string]*manifest{}}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &t.bucket}); err != nil {
		return fmt.Errorf("checking bucket %q: %w", t.bucket, err)
	}
	if t.taskID == 0 {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		t.stopSweep = cancel
		t.sweeping.Go(func() { t.sweepLoop(sctx) })
	}
	return nil
}

// Stop ends the housekeeping. Idempotent.
func (t *SinkTask) Stop(context.Context) error {
	if t.stopSweep != nil {
		t.stopSweep()
		t.sweeping.Wait()
		t.stopSweep = nil
	}
	return nil
}

// item is one event of a Put on its way into an object.
type item struct {
	seq   uint64
	id    uint64 // idHash
	topic string
	time  time.Time
	group string
	rec   []byte
}

// object is the events of one object, ascending by sequence.
type object struct {
	items []item
}

// Put is never called: the runtime calls PutPositions of a
// connectors.PositionedSink.
func (t *SinkTask) Put(context.Context, []event.Event) error {
	return bridge.PermanentError(errors.New("s3-sink needs the mesh position of every event (PutPositions)"))
}

// PutPositions writes the events into objects and returns once every object is
// complete. An event that cannot be written in the format fails alone,
// for good; an S3 failure fails the batch, which the runtime retries.
func (t *SinkTask) PutPositions(ctx context.Context, events []event.Event, pos []connectors.Position) error {
	if len(pos) != len(events) {
		return fmt.Errorf("s3-sink needs the mesh position of every event; Put got %d for %d events", len(pos), len(events))
	}
	arrival := time.Now().UTC()
	all := make([]item, len(events))
	errs := make([]error, len(events))
	forChunks(len(events), len(t.encodeBufs), func(chunk, from, to int) {
		// One buffer for the records of a chunk, kept from Put to Put: an
		// allocation for each, and the garbage collector, cost more than
		// the encoding.
		buf := t.encodeBuf(chunk)
		ends := make([]int, to-from)
		for i := from; i < to; i++ {
			e := &events[i]
			errs[i] = appendRecord(buf, t.format, e)
			ends[i-from] = buf.Len()
			if errs[i] != nil {
				continue
			}
			tm := arrival
			if t.partitionTime == TimeEvent && !e.Time().IsZero() {
				tm = e.Time().UTC()
			}
			all[i] = item{seq: pos[i].Sequence, id: idHash(e), topic: pos[i].Topic, time: tm, group: t.tmpl.group(pos[i].Topic, tm)}
		}
		b, start := buf.Bytes(), 0
		for i := from; i < to; i++ {
			end := ends[i-from]
			all[i].rec = b[start:end:end]
			start = end
		}
	})
	failed := map[int]error{}
	items := all[:0]
	for i, it := range all {
		if errs[i] != nil {
			failed[i] = bridge.PermanentError(fmt.Errorf("event %q cannot be written as %s: %w", events[i].ID(), t.format, errs[i]))
			continue
		}
		items = append(items, it)
	}
	// The same event twice in one batch (redelivered while the batch
	// filled) is written once.
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.seq, b.seq) })
	items = slices.CompactFunc(items, func(a, b item) bool { return a.seq == b.seq })
	if len(items) > 0 {
		seqs, ids := sequences(items)
		stored, err := t.index.stored(ctx, seqs, ids)
		if err != nil {
			return classify(err)
		}
		if len(stored) > 0 {
			t.log.Debug("skipping events already written", "count", len(stored))
			items = slices.DeleteFunc(items, func(it item) bool { return stored[it.seq] })
		}
		if err := t.writeAll(ctx, t.plan(items)); err != nil {
			return classify(err)
		}
	}
	if len(failed) > 0 {
		return &connectors.PartialError{Failed: failed}
	}
	return nil
}

// forChunks calls f with consecutive ranges of 0..n-1 (numbered from 0),
// up to maxWorkers at once: encoding a batch costs more than uploading it.
func forChunks(n, maxWorkers int, f func(chunk, from, to int)) {
	workers := max(min(maxWorkers, n/256+1), 1)
	size := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for from := 0; from < n; from += size {
		wg.Go(func() { f(from/size, from, min(from+size, n)) })
	}
	wg.Wait()
}

// encodeBuf returns the emptied encoding buffer of a chunk of Put.
func (t *SinkTask) encodeBuf(chunk int) *bytes.Buffer {
	b := t.encodeBufs[chunk]
	b.Reset()
	return b
}

// plan splits items (ascending by sequence) into objects: one per key
// group, closed at flush.size bytes or flush.count events.
func (t *SinkTask) plan(items []item) []object {
	var out []object
	open := map[string]int{} // group → index in out of its open object
	size := map[string]int{}
	for _, it := range items {
		i, ok := open[it.group]
		if ok && (len(out[i].items) >= t.flushCount || size[it.group]+len(it.rec)+1 > t.flushSize) {
			ok = false
		}
		if !ok {
			out = append(out, object{})
			i = len(out) - 1
			open[it.group], size[it.group] = i, 0
		}
		out[i].items = append(out[i].items, it)
		size[it.group] += len(it.rec) + 1
	}
	return out
}

func sequences(items []item) (seqs, ids []uint64) {
	seqs, ids = make([]uint64, len(items)), make([]uint64, len(items))
	for i, it := range items {
		seqs[i], ids[i] = it.seq, it.id
	}
	return seqs, ids
}

// writeAll writes objects one after the other. When a key holds an object
// with the same first event the index does not know (errTaken), that event
// counts as written and the rest goes into an object of its own.
func (t *SinkTask) writeAll(ctx context.Context, objects []object) error {
	for len(objects) > 0 {
		o := objects[0]
		objects = objects[1:]
		err := t.write(ctx, o)
		if errors.Is(err, errTaken) {
			t.log.Warn("an object holding this batch's first event exists but is not in the index (its manifest expired?); "+
				"the rest of its events go into a new object and may be written twice", "error", err)
			if len(o.items) > 1 {
				objects = append([]object{{items: o.items[1:]}}, objects...)
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// write writes one object at the key of its template, or, when another
// mesh's object holds that key, at the same key with the set hash before
// the extension (both keys are the same for a retry of the same events).
func (t *SinkTask) write(ctx context.Context, o object) error {
	seqs, ids := sequences(o.items)
	set := setHash(seqs, ids)
	v := keyValues{topic: o.items[0].topic, time: o.items[0].time, first: seqs[0], last: seqs[len(seqs)-1], ext: t.ext}
	key := t.tmpl.expand(v)
	err := t.writeAt(ctx, key, o, seqs, ids, set)
	if errors.Is(err, errOccupied) {
		v.alt = set
		alt := t.tmpl.expand(v)
		t.log.Info("the key of an object holds other events (another meshd numbers events the same?); writing it beside", "key", key, "written", alt)
		err = t.writeAt(ctx, alt, o, seqs, ids, set)
	}
	if err != nil {
		return err
	}
	t.index.markComplete(seqs, set)
	return nil
}

// writeAt writes the object at key: its manifest first, then the object,
// which only a complete upload makes visible. nil when key holds it
// already (a retry).
func (t *SinkTask) writeAt(ctx context.Context, key string, o object, seqs, ids []uint64, set string) error {
	// Look first: a retry finds its object, and a taken key costs no
	// upload. If-None-Match still guards the write.
	if done, err := t.holds(ctx, key, set, ids[0]); done || err != nil {
		return err
	}
	if err := t.index.add(ctx, key, seqs, ids, set); err != nil {
		return err
	}
	t.objectBuf.Reset()
	u := &upload{
		client: t.client, bucket: t.bucket, key: key, meta: metadata(seqs, ids, set), buf: &t.objectBuf,
		contentType: contentType(t.format), partSize: t.partSize, sem: make(chan struct{}, t.concurrency),
	}
	if t.compression == CompressionGzip {
		u.encoding = "gzip"
	} else {
		size := 2
		for _, it := range o.items {
			size += len(it.rec) + 1
		}
		u.buf.Grow(min(size, t.partSize))
	}
	enc := newObjectEncoder(t.format, t.compression, u)
	for _, it := range o.items {
		if err := enc.write(it.rec); err != nil {
			u.abort(ctx)
			return err
		}
		if err := u.sendFull(ctx); err != nil {
			u.abort(ctx)
			return err
		}
	}
	if err := enc.close(); err != nil {
		u.abort(ctx)
		return err
	}
	err := u.finish(ctx)
	if errors.Is(err, errExists) {
		// Written meanwhile: by an earlier attempt whose answer was lost,
		// or it is taken.
		if done, err := t.holds(ctx, key, set, ids[0]); done || err != nil {
			return err
		}
		return fmt.Errorf("writing %q: %w", key, errOccupied)
	}
	return err
}

// holds reports whether key holds the object of set; errTaken or
// errOccupied when it holds another.
func (t *SinkTask) holds(ctx context.Context, key, set string, firstID uint64) (bool, error) {
	h, err := t.index.head(ctx, key)
	switch {
	case err != nil:
		return false, err
	case !h.found:
		return false, nil
	case h.set == set:
		return true, nil
	case h.firstID == strconv.FormatUint(firstID, 16):
		return false, fmt.Errorf("writing %q: %w", key, errTaken)
	}
	return false, fmt.Errorf("writing %q: %w", key, errOccupied)
}

// sweepLoop removes expired manifests and stale multipart uploads, now
// and every sweepEvery, until ctx is done.
func (t *SinkTask) sweepLoop(ctx context.Context) {
	for {
		if n, err := t.index.sweep(ctx, t.retention); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.log.Warn("removing expired manifests of the index", "error", err)
		} else if n > 0 {
			t.log.Info("removed expired manifests of the index", "count", n)
		}
		if err := t.abortStale(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("aborting stale multipart uploads", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(sweepEvery):
		}
	}
}

// abortStale aborts the multipart uploads of keys this sink makes that
// began more than staleUpload ago: what a crash mid-upload leaves.
func (t *SinkTask) abortStale(ctx context.Context) error {
	prefix := t.tmpl.staticPrefix()
	in := &s3.ListMultipartUploadsInput{Bucket: &t.bucket, Prefix: &prefix}
	cutoff := time.Now().Add(-cmp.Or(t.staleAfter, staleUpload))
	for {
		out, err := t.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("listing multipart uploads: %w", err)
		}
		for _, u := range out.Uploads {
			if u.Key == nil || !t.pattern.MatchString(*u.Key) || u.Initiated == nil || u.Initiated.After(cutoff) {
				continue
			}
			if _, err := t.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &t.bucket, Key: u.Key, UploadId: u.UploadId}); err != nil && !isNotFound(err) && apiCode(err) != "NoSuchUpload" {
				return fmt.Errorf("aborting the upload of %q: %w", *u.Key, err)
			}
			t.log.Info("aborted a multipart upload left open", "key", *u.Key, "initiated", *u.Initiated)
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
