package s3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
)

const (
	benchObjects    = 8
	benchObjectSize = 10_000_000 // bytes
	benchEventData  = 1024       // bytes of data per event
)

// BenchmarkSinkPut compares s3-sink's Put with the bare SDK, writing the
// same events into one versitygw in the same run:
//
//   - sink: events with 1 KiB of JSON data handed to SinkTask.Put, as many
//     per Put as fill a 10 MB JSON Lines object (flush.size 10 MB, the
//     default part.size 8 MiB: a multipart upload of two parts): encoding,
//     the index lookup, the manifest, the conditional upload.
//   - sdk: the same JSON Lines bytes, already encoded, uploaded as 10 MB
//     objects with one PutObject each.
//
// It reports sink_eps and sdk_eps (events per second), their MB/s and
// ratio = sink_eps/sdk_eps. The mesh and the runtime are not part of it.
// Run it with -benchtime 1x (make bench does).
func BenchmarkSinkPut(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	evs, pos := testEvents("bench", 1, 1, benchEventData+40)
	one, err := record(FormatJSONL, &evs[0])
	if err != nil {
		b.Fatal(err)
	}
	perObject := benchObjectSize / (len(one) + 1)
	n := perObject * benchObjects
	evs, pos = testEvents("bench", 1, n, benchEventData+40)
	var objects [][]byte
	for from := 0; from < n; from += perObject {
		var buf bytes.Buffer
		for i := from; i < from+perObject; i++ {
			rec, _ := record(FormatJSONL, &evs[i])
			buf.Write(rec)
			buf.WriteByte('\n')
		}
		objects = append(objects, buf.Bytes())
	}
	for b.Loop() {
		rawBucket, sinkBucket := s.bucket(b), s.bucket(b)
		start := time.Now()
		for i, body := range objects {
			key := fmt.Sprintf("raw/%04d.jsonl", i)
			if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &rawBucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
				b.Fatalf("sdk: %v", err)
			}
		}
		rawTime := time.Since(start)

		task := &SinkTask{}
		task.Init(connectortest.TaskContext(nil))
		if err := task.Start(ctx, s.validated(b, SinkSpec, sinkBucket, FieldFlushSize, 2*benchObjectSize, connectors.FieldBatchSize, perObject)); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for from := 0; from < n; from += perObject {
			if err := put(ctx, task, evs[from:from+perObject], pos[from:from+perObject]); err != nil {
				b.Fatalf("sink: %v", err)
			}
		}
		sinkTime := time.Since(start)
		_ = task.Stop(ctx)

		if keys := s.dataKeys(b, sinkBucket); len(keys) != benchObjects {
			b.Fatalf("the sink wrote %d objects, want %d", len(keys), benchObjects)
		}
		sinkEPS, rawEPS := float64(n)/sinkTime.Seconds(), float64(n)/rawTime.Seconds()
		mb := float64(benchObjects*len(objects[0])) / 1e6
		b.ReportMetric(sinkEPS, "sink_eps")
		b.ReportMetric(rawEPS, "sdk_eps")
		b.ReportMetric(mb/sinkTime.Seconds(), "sink_MB/s")
		b.ReportMetric(mb/rawTime.Seconds(), "sdk_MB/s")
		b.ReportMetric(sinkEPS/rawEPS, "ratio")
	}
}

// BenchmarkSourceRead compares s3-source reading JSON Lines objects of
// structured CloudEvents (1 KiB of data each, 10 MB objects) with a bare
// ranged GET of the same objects split into lines, in the same run:
//
//   - source: SourceTask.Poll and Commit until every record came: listing,
//     GET, line split, CloudEvent decoding and validation, offsets.
//   - sdk: GetObject with Range bytes=0- and a bufio line split.
//
// It reports source_eps and sdk_eps (events per second) and ratio =
// source_eps/sdk_eps. The mesh and the runtime are not part of it. Run it
// with -benchtime 1x (make bench does).
func BenchmarkSourceRead(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	bucket := s.bucket(b)
	pad := strings.Repeat("x", benchEventData-12)
	var total int
	for i := range benchObjects {
		var buf bytes.Buffer
		for buf.Len() < benchObjectSize {
			fmt.Fprintf(&buf, `{"specversion":"1.0","id":"e-%08d","source":"/bench","type":"dev.meshd.bench","datacontenttype":"application/json","data":{"pad":%q}}`+"\n", total, pad)
			total++
		}
		s.put(b, bucket, fmt.Sprintf("in/%04d.jsonl", i), buf.Bytes())
	}
	for b.Loop() {
		start := time.Now()
		lines := 0
		for i := range benchObjects {
			key := fmt.Sprintf("in/%04d.jsonl", i)
			out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: aws.String("bytes=0-")})
			if err != nil {
				b.Fatalf("sdk: %v", err)
			}
			sc := bufio.NewScanner(out.Body)
			sc.Buffer(make([]byte, readBuffer), 1<<20)
			for sc.Scan() {
				lines++
			}
			out.Body.Close()
			if err := sc.Err(); err != nil {
				b.Fatalf("sdk: %v", err)
			}
		}
		rawTime := time.Since(start)
		if lines != total {
			b.Fatalf("sdk: %d lines, want %d", lines, total)
		}

		task := &SourceTask{}
		task.Init(connectortest.TaskContext(nil))
		if err := task.Start(ctx, s.validated(b, SourceSpec, bucket, FieldPrefix, "in/")); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		got := 0
		var last connectors.Record
		for got < total {
			recs, err := task.Poll(ctx)
			if err != nil {
				b.Fatalf("source: %v", err)
			}
			if err := task.Commit(ctx, recs); err != nil {
				b.Fatalf("source: %v", err)
			}
			got += len(recs)
			if len(recs) > 0 {
				last = recs[len(recs)-1]
			}
		}
		srcTime := time.Since(start)
		_ = task.Stop(ctx)
		var o offset
		if err := json.Unmarshal([]byte(last.Offset), &o); err != nil || !o.Done || got != total {
			b.Fatalf("source: %d records, last offset %s", got, last.Offset)
		}
		srcEPS, rawEPS := float64(total)/srcTime.Seconds(), float64(total)/rawTime.Seconds()
		b.ReportMetric(srcEPS, "source_eps")
		b.ReportMetric(rawEPS, "sdk_eps")
		b.ReportMetric(srcEPS/rawEPS, "ratio")
	}
}
