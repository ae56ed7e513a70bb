package s3

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan"
	"github.com/meshd/meshd/connectors"
)

// readBuffer is the read buffer of an object's body.
const readBuffer = 64 << 10

// maxReadFailures bounds the reconnects to one object in a row before
// Poll fails.
const maxReadFailures = 3

// reading is one object being read from a byte position.
type reading struct {
	obj          objectInfo
	body         io.ReadCloser
	r            *bufio.Reader
	pos          int64 // of the next unread record, in the (decompressed) object
	ended        bool
	contentType  string
	lastModified time.Time
}

func (r *reading) close() {
	if r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
}

// readError is a failure while reading an object's body: the connection
// can be opened again at the position of the next record.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// open starts reading obj at byte pos of its (decompressed) content: a
// ranged GET that holds only if the object still has obj's ETag. An
// object replaced since (a new ETag) is read from its start; nil when it
// is gone.
func (t *SourceTask) open(ctx context.Context, obj objectInfo, pos int64) (*reading, error) {
	gz := t.compression == CompressionGzip || t.compression == CompressionAuto && strings.HasSuffix(obj.key, ".gz")
	in := &s3.GetObjectInput{Bucket: &t.bucket, Key: &obj.key}
	if pos > 0 {
		in.IfMatch = aws.String(obj.etag)
		if !gz {
			in.Range = aws.String("bytes=" + strconv.FormatInt(pos, 10) + "-")
		}
	}
	out, err := t.client.GetObject(ctx, in)
	switch {
	case isNotFound(err):
		return nil, nil
	case isPreconditionFailed(err):
		t.log.Info("object replaced since its offset was committed; reading it from the start", "key", obj.key)
		return t.open(ctx, objectInfo{key: obj.key}, 0)
	case apiCode(err) == "InvalidRange":
		// The offset is at the object's end: nothing is left to read.
		return &reading{obj: obj, pos: pos, ended: true}, nil
	case err != nil:
		return nil, fmt.Errorf("reading %q: %w", obj.key, err)
	}
	if !gz && t.compression == CompressionAuto && strings.EqualFold(aws.ToString(out.ContentEncoding), "gzip") {
		gz = true
		if in.Range != nil {
			// A gzip stream resumes from its start.
			_ = out.Body.Close()
			return t.open(ctx, obj, pos)
		}
	}
	r := &reading{
		obj: objectInfo{key: obj.key, etag: aws.ToString(out.ETag)}, body: out.Body, pos: pos,
		contentType: aws.ToString(out.ContentType), lastModified: aws.ToTime(out.LastModified),
	}
	var src io.Reader = out.Body
	if gz {
		zr, err := gzip.NewReader(bufio.NewReaderSize(out.Body, readBuffer))
		if err != nil {
			r.close()
			if errors.Is(err, io.EOF) {
				r.ended = true
				return r, nil
			}
			return nil, fmt.Errorf("reading %q as gzip: %w", obj.key, err)
		}
		src = zr
	}
	r.r = bufio.NewReaderSize(src, readBuffer)
	if gz && pos > 0 {
		if _, err := io.CopyN(io.Discard, r.r, pos); err != nil {
			r.close()
			return nil, fmt.Errorf("skipping the %d bytes of %q read before: %w", pos, obj.key, err)
		}
	}
	return r, nil
}

// readRecords appends the records of r to recs until the poll is full or
// r ended. A failure of the connection is a *readError, returned with the
// records read before it.
//
// Records are read one after the other, then made into events on every
// CPU: decoding a CloudEvent costs ten times reading its line.
func (t *SourceTask) readRecords(p *prefixState, r *reading, recs []connectors.Record, size int) ([]connectors.Record, int, error) {
	type raw struct {
		start, end int64
		data       []byte
	}
	var raws []raw
	var readErr error
	for !r.ended && len(recs)+len(raws) < t.maxRecords && size < pollMaxBytes {
		start := r.pos
		data, n, err := t.readRecord(r.r)
		if errors.Is(err, io.EOF) {
			r.ended = true
			break
		}
		if errors.Is(err, errTooLong) {
			t.log.Warn("skipping a record longer than "+FieldRecordMaxSize, "key", r.obj.key, "pos", start, "limit", t.maxRecord)
		} else if err != nil {
			readErr = &readError{fmt.Errorf("reading %q at byte %d: %w", r.obj.key, start, err)}
			break
		}
		r.pos += int64(n)
		if err != nil {
			if t.mode == ModeObject {
				r.ended = true
			}
			continue
		}
		raws = append(raws, raw{start: start, end: r.pos, data: data})
		size += len(data)
		if t.mode == ModeObject || atEnd(r.r) {
			r.ended = true
		}
	}
	evs := make([]event.Event, len(raws))
	errs := make([]error, len(raws))
	forChunks(len(raws), runtime.GOMAXPROCS(0), func(_, from, to int) {
		for i := from; i < to; i++ {
			evs[i], errs[i] = t.event(r, raws[i].start, raws[i].data)
		}
	})
	for i, rr := range raws {
		if errors.Is(errs[i], errBlank) {
			continue
		}
		if errs[i] != nil {
			t.log.Warn("skipping a record that is not a valid event", "key", r.obj.key, "pos", rr.start, "error", errs[i])
			continue
		}
		o := offset{Key: r.obj.key, ETag: r.obj.etag, Pos: rr.end, Done: r.ended && i == len(raws)-1}
		recs = append(recs, connectors.Record{Event: evs[i], Partition: p.partition, Offset: o.String()})
	}
	return recs, size, readErr
}

// atEnd reports whether br has no byte left.
func atEnd(br *bufio.Reader) bool {
	_, err := br.Peek(1)
	return errors.Is(err, io.EOF)
}

var (
	errTooLong = errors.New("record longer than " + FieldRecordMaxSize)
	errBlank   = errors.New("blank line")
)

// readRecord reads the next record of the read mode and the bytes it
// took; io.EOF at the end; errTooLong (with the bytes skipped) for a
// record over record.max.size.
func (t *SourceTask) readRecord(br *bufio.Reader) ([]byte, int, error) {
	switch t.mode {
	case ModeObject:
		data, err := io.ReadAll(io.LimitReader(br, int64(t.maxRecord)+1))
		if err != nil {
			return nil, len(data), err
		}
		if len(data) > t.maxRecord {
			return nil, len(data), errTooLong
		}
		return data, len(data), nil
	case ModeFixed:
		return readFixed(br, t.schema)
	}
	return readLine(br, t.maxRecord)
}

// readLine reads a line without its line break; the last line of an
// object may lack one.
func readLine(br *bufio.Reader, limit int) ([]byte, int, error) {
	var line []byte
	n := 0
	tooLong := false
	for {
		frag, err := br.ReadSlice('\n')
		n += len(frag)
		if !tooLong {
			if len(line)+len(frag) > limit+2 { // room for \r\n
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return nil, n, err
		}
		break
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if tooLong || len(line) > limit {
		return nil, n, errTooLong
	}
	return line, n, nil
}

// readFixed reads one fixed-width record and the line break after it, if
// any. A record cut short by the end of the object is dropped.
func readFixed(br *bufio.Reader, schema []schemaField) ([]byte, int, error) {
	width := 0
	for _, f := range schema {
		width += f.width
	}
	buf := make([]byte, width)
	n, err := io.ReadFull(br, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, n, io.EOF
	}
	if err != nil {
		return nil, n, err
	}
	if b, _ := br.Peek(2); len(b) > 0 && b[0] == '\n' {
		_, _ = br.Discard(1)
		n++
	} else if len(b) == 2 && b[0] == '\r' && b[1] == '\n' {
		_, _ = br.Discard(2)
		n += 2
	}
	fields := make(map[string]string, len(schema))
	at := 0
	for _, f := range schema {
		fields[f.name] = strings.TrimSpace(string(buf[at : at+f.width]))
		at += f.width
	}
	data, err := json.Marshal(fields)
	return data, n, err
}

// event makes the event of a record that began at byte start.
func (t *SourceTask) event(r *reading, start int64, data []byte) (event.Event, error) {
	if t.mode == ModeJSONL || t.mode == ModeLines {
		if len(bytes.TrimSpace(data)) == 0 {
			return event.Event{}, errBlank
		}
	}
	if t.mode == ModeJSONL {
		e := event.New()
		// The SDK's own decoder: json.Unmarshal would scan each line twice
		// more before handing it over.
		if err := e.UnmarshalJSON(data); err != nil {
			return e, fmt.Errorf("not a structured CloudEvent: %w", err)
		}
		if err := bridge.Validate(&e); err != nil {
			return e, err
		}
		return e, nil
	}
	e := event.New()
	e.SetID(strings.Trim(r.obj.etag, `"`) + ":" + strconv.FormatInt(start, 10))
	e.SetSource((&url.URL{Scheme: "s3", Host: t.bucket, Path: "/" + r.obj.key}).String())
	e.SetSubject(r.obj.key)
	e.SetType(t.eventType)
	if !r.lastModified.IsZero() {
		e.SetTime(r.lastModified)
	}
	ct := t.contentType
	switch t.mode {
	case ModeObject:
		ct = r.contentType
		if ct == "" {
			ct = "application/octet-stream"
		}
	case ModeFixed:
		ct = event.ApplicationJSON
	}
	if isJSON(ct) && !jsonscan.Valid(data) {
		return e, fmt.Errorf("content type %s, but not JSON", ct)
	}
	if err := e.SetData(ct, data); err != nil {
		return e, err
	}
	return e, bridge.Validate(&e)
}
