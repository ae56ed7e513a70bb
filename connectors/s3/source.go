package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*SourceTask)(nil)
	_ connectors.Committer   = (*SourceTask)(nil)
	_ connectors.Initializer = (*SourceTask)(nil)
)

const (
	// pollMaxBytes bounds the record bytes of one poll.
	pollMaxBytes = 8 << 20
	// idleWait bounds how long an idle Poll blocks.
	idleWait = time.Second
	// listPage is the most keys one listing asks for.
	listPage = 1000
)

// Default event types of wrapped records.
const (
	TypeLine   = "dev.meshd.s3.line"
	TypeObject = "dev.meshd.s3.object"
	TypeRecord = "dev.meshd.s3.record"
)

// offset is the committed position in one prefix: the object being read
// (or read last), its ETag, and the byte position of its next unread
// record in the object's (decompressed) bytes. Done: the object was read
// to its end.
type offset struct {
	Key  string `json:"key"`
	ETag string `json:"etag"`
	Pos  int64  `json:"pos"`
	Done bool   `json:"done,omitempty"`
}

func (o offset) String() string {
	b, _ := json.Marshal(o)
	return string(b)
}

// objectInfo is an object as listed.
type objectInfo struct {
	key, etag string
}

// prefixState is the reading of one prefix: objects in lexical key order,
// one at a time.
type prefixState struct {
	prefix    string
	partition string
	listedTo  string  // the next listing starts after this key
	token     *string // continuation of an unfinished listing
	queue     []objectInfo
	resume    *offset  // committed offset of an object to finish first
	cur       *reading // object being read
	last      *objectInfo
	idleUntil time.Time
	// readFailures counts the reconnects to the object being read since
	// it last gave a record.
	readFailures int
}

// action is an after.read to do on an object.
type action struct {
	prefix string
	obj    objectInfo
}

// SourceTask reads the objects under its prefixes (see the package doc).
type SourceTask struct {
	client       *s3.Client
	bucket       string
	mode         string
	schema       []schemaField
	contentType  string
	eventType    string
	compression  string
	pollInterval time.Duration
	afterRead    string
	movePrefix   string
	maxRecords   int
	maxRecord    int

	log      *slog.Logger
	offsets  map[string]string
	prefixes []*prefixState
	next     int
	// pending: after.read actions due once the record they are keyed by
	// (partition and offset) is committed; failed: actions to try again.
	pending map[string]action
	failed  []action

	httpClient aws.HTTPClient // set by tests
}

// Init takes the committed offsets and the logger.
func (t *SourceTask) Init(tc connectors.TaskContext) {
	t.log, t.offsets = tc.Logger(), tc.Offsets()
}

// Partition names the offsets of one prefix of a bucket.
func Partition(bucket, prefix string) string { return "s3://" + bucket + "/" + prefix }

// Start makes the client, checks the bucket and restores the offsets.
func (t *SourceTask) Start(ctx context.Context, cfg connectors.Config) error {
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	client, err := newClient(ctx, cfg, t.httpClient)
	if err != nil {
		return err
	}
	t.client, t.bucket = client, cfg.String(FieldBucket)
	t.mode, t.contentType, t.compression = cfg.String(FieldReadMode), cfg.String(FieldContentType), cfg.String(FieldCompression)
	t.pollInterval = cfg.Duration(FieldPollInterval)
	t.afterRead, t.movePrefix = cfg.String(FieldAfterRead), cfg.String(FieldMovePrefix)
	t.maxRecords, t.maxRecord = int(cfg.Int(FieldBatchMaxRecords)), int(cfg.Int(FieldRecordMaxSize))
	t.eventType = cfg.String(FieldEventType)
	if t.eventType == "" {
		t.eventType = map[string]string{ModeLines: TypeLine, ModeObject: TypeObject, ModeFixed: TypeRecord}[t.mode]
	}
	if t.mode == ModeFixed {
		if t.schema, err = parseSchema(cfg.Strings(FieldSchema)); err != nil {
			return fmt.Errorf("%s: %w", FieldSchema, err)
		}
	}
	t.pending = map[string]action{}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &t.bucket}); err != nil {
		return fmt.Errorf("checking bucket %q: %w", t.bucket, err)
	}
	for _, prefix := range cfg.Strings(FieldPrefix) {
		p := &prefixState{prefix: prefix, partition: Partition(t.bucket, prefix)}
		if raw, ok := t.offsets[p.partition]; ok {
			var o offset
			if err := json.Unmarshal([]byte(raw), &o); err != nil || !strings.HasPrefix(o.Key, prefix) {
				return fmt.Errorf("committed offset of %s is not one of s3-source: %q", p.partition, raw)
			}
			p.listedTo = o.Key
			if o.Done {
				p.last = &objectInfo{key: o.Key, etag: o.ETag}
				if t.afterRead != AfterKeep {
					// The action may not have run before the stop.
					t.failed = append(t.failed, action{prefix: prefix, obj: *p.last})
				}
			} else {
				p.resume = &o
			}
		}
		t.prefixes = append(t.prefixes, p)
	}
	return nil
}

// Stop closes the object being read. Idempotent.
func (t *SourceTask) Stop(context.Context) error {
	for _, p := range t.prefixes {
		if p.cur != nil {
			p.cur.close()
			p.cur = nil
		}
	}
	return nil
}

// Poll returns the next records of one prefix, taking the prefixes in
// turn. With nothing new anywhere it waits (at most idleWait) and returns
// none.
func (t *SourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	t.retryActions(ctx)
	for range t.prefixes {
		p := t.prefixes[t.next]
		t.next = (t.next + 1) % len(t.prefixes)
		recs, err := t.pollPrefix(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if len(recs) > 0 {
			return recs, nil
		}
	}
	wake := time.Now().Add(idleWait)
	for _, p := range t.prefixes {
		if p.idleUntil.Before(wake) {
			wake = p.idleUntil
		}
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(wake)):
		return nil, nil
	}
}

// pollPrefix reads up to batch.max.records records of p.
func (t *SourceTask) pollPrefix(ctx context.Context, p *prefixState) ([]connectors.Record, error) {
	var recs []connectors.Record
	size := 0
	for len(recs) < t.maxRecords && size < pollMaxBytes {
		if p.cur == nil {
			r, err := t.openNext(ctx, p)
			if err != nil || r == nil {
				return recs, err
			}
			p.cur = r
		}
		r := p.cur
		before := len(recs)
		var err error
		recs, size, err = t.readRecords(p, r, recs, size)
		var re *readError
		if errors.As(err, &re) && p.readFailures < maxReadFailures && ctx.Err() == nil {
			// The connection broke: open the object again at its next record.
			p.readFailures++
			t.log.Warn("reading an object; opening it again at its next record", "key", r.obj.key, "pos", r.pos, "error", err)
			r.close()
			p.cur, p.resume = nil, &offset{Key: r.obj.key, ETag: r.obj.etag, Pos: r.pos}
			continue
		}
		if err != nil {
			return recs, err
		}
		if len(recs) > before {
			p.readFailures = 0
		}
		if !r.ended {
			continue
		}
		// The object is read to its end.
		r.close()
		p.cur, p.last = nil, &r.obj
		if t.afterRead == AfterKeep {
			continue
		}
		a := action{prefix: p.prefix, obj: r.obj}
		if len(recs) > before && recs[len(recs)-1].Partition == p.partition {
			// Due once its last record's offset is committed.
			t.pending[p.partition+"\x00"+recs[len(recs)-1].Offset] = a
		} else {
			// Its records were committed by earlier polls, or it had none.
			t.do(ctx, a)
		}
	}
	return recs, nil
}

// openNext opens the object p resumes or the next one its listing gives;
// nil when there is none now.
func (t *SourceTask) openNext(ctx context.Context, p *prefixState) (*reading, error) {
	if o := p.resume; o != nil {
		p.resume = nil
		r, err := t.open(ctx, objectInfo{key: o.Key, etag: o.ETag}, o.Pos)
		if err != nil || r != nil {
			return r, err
		}
	}
	for {
		if len(p.queue) == 0 {
			if time.Now().Before(p.idleUntil) {
				return nil, nil
			}
			found, err := t.list(ctx, p)
			if err != nil {
				return nil, err
			}
			if !found {
				if err := t.checkReplaced(ctx, p); err != nil || len(p.queue) == 0 {
					p.idleUntil = time.Now().Add(t.pollInterval)
					return nil, err
				}
			}
		}
		obj := p.queue[0]
		p.queue = p.queue[1:]
		r, err := t.open(ctx, obj, 0)
		if err != nil || r != nil {
			return r, err
		}
		// Gone since the listing: next.
	}
}

// list lists the next page of p's keys into its queue.
func (t *SourceTask) list(ctx context.Context, p *prefixState) (bool, error) {
	in := &s3.ListObjectsV2Input{Bucket: &t.bucket, Prefix: &p.prefix, MaxKeys: aws.Int32(listPage)}
	if p.token != nil {
		in.ContinuationToken = p.token
	} else if p.listedTo != "" {
		in.StartAfter = &p.listedTo
	}
	out, err := t.client.ListObjectsV2(ctx, in)
	if err != nil {
		return false, fmt.Errorf("listing %s: %w", Partition(t.bucket, p.prefix), err)
	}
	p.token = nil
	if aws.ToBool(out.IsTruncated) {
		p.token = out.NextContinuationToken
	}
	for _, o := range out.Contents {
		key := aws.ToString(o.Key)
		if key > p.listedTo {
			p.listedTo = key
		}
		if strings.HasSuffix(key, "/") && aws.ToInt64(o.Size) == 0 {
			continue // a "folder" marker
		}
		p.queue = append(p.queue, objectInfo{key: key, etag: aws.ToString(o.ETag)})
	}
	return len(p.queue) > 0 || p.token != nil, nil
}

// checkReplaced queues the last object read again when it was replaced
// under the same key since (a new ETag): nothing after it was listed.
func (t *SourceTask) checkReplaced(ctx context.Context, p *prefixState) error {
	if p.last == nil {
		return nil
	}
	out, err := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &t.bucket, Key: &p.last.key})
	switch {
	case isNotFound(err):
		p.last = nil
		return nil
	case err != nil:
		return fmt.Errorf("checking %q: %w", p.last.key, err)
	}
	if etag := aws.ToString(out.ETag); etag != p.last.etag {
		t.log.Info("object replaced since it was read; reading it again", "key", p.last.key)
		p.queue = append(p.queue, objectInfo{key: p.last.key, etag: etag})
		p.last = nil
	}
	return nil
}

// retryActions runs the after.read actions that failed before.
func (t *SourceTask) retryActions(ctx context.Context) {
	failed := t.failed
	t.failed = nil
	for _, a := range failed {
		t.do(ctx, a)
	}
}

// Commit runs the after.read action of each object whose last record is
// among recs (their offsets are committed).
func (t *SourceTask) Commit(ctx context.Context, recs []connectors.Record) error {
	for _, r := range recs {
		k := r.Partition + "\x00" + r.Offset
		if a, ok := t.pending[k]; ok {
			delete(t.pending, k)
			t.do(ctx, a)
		}
	}
	return nil
}

// do deletes or moves a read object, unless it was replaced since it was
// read. A failure is logged and tried again at the next poll.
func (t *SourceTask) do(ctx context.Context, a action) {
	err := t.act(ctx, a)
	if err == nil {
		return
	}
	if ctx.Err() == nil {
		t.log.Warn("after.read "+t.afterRead+" of a read object; will retry", "key", a.obj.key, "error", err)
	}
	t.failed = append(t.failed, a)
}

func (t *SourceTask) act(ctx context.Context, a action) error {
	key := a.obj.key
	if t.afterRead == AfterMove {
		dest := t.movePrefix + strings.TrimPrefix(key, a.prefix)
		_, err := t.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &t.bucket, Key: &dest, CopySource: aws.String(copySource(t.bucket, key)), CopySourceIfMatch: &a.obj.etag,
		})
		switch {
		case isNotFound(err):
			// Moved or deleted already — unless the copy named it wrong.
			if _, herr := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &t.bucket, Key: &key}); !isNotFound(herr) {
				return fmt.Errorf("copying %q to %q: %w", key, dest, err)
			}
			return nil
		case isPreconditionFailed(err):
			t.log.Warn("object replaced since it was read; not moved", "key", key)
			return nil
		case err != nil:
			return fmt.Errorf("copying %q to %q: %w", key, dest, err)
		}
	} else {
		head, err := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &t.bucket, Key: &key})
		switch {
		case isNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("checking %q: %w", key, err)
		case aws.ToString(head.ETag) != a.obj.etag:
			t.log.Warn("object replaced since it was read; not deleted", "key", key)
			return nil
		}
	}
	if _, err := t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &t.bucket, Key: &key}); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	return nil
}

// copySource is the bucket/key of CopyObject, URL-encoded: every byte
// but the unreserved ones and the slashes (a + left as it is reads as a
// space on some servers).
func copySource(bucket, key string) string {
	var b strings.Builder
	b.WriteString(bucket + "/")
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.IndexByte("-._~/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
