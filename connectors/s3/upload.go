package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// maxParts is S3's most parts of a multipart upload.
const maxParts = 10_000

// abortTimeout bounds the abort of a failed multipart upload, which runs
// even when the Put's context is done.
const abortTimeout = 30 * time.Second

// errExists is returned by upload.finish when an object of that key is in
// the bucket already (If-None-Match: * refused the write).
var errExists = errors.New("an object of that key exists")

// upload writes one object whose bytes arrive in buf: a single
// conditional PutObject when it ends before part.size bytes, otherwise a
// multipart upload in parts of part.size (the last one smaller), up to
// upload.concurrency at once, completed with If-None-Match: *. Any
// failure aborts the multipart upload: none is left open.
type upload struct {
	client      *s3.Client
	bucket, key string
	meta        map[string]string
	contentType string
	encoding    string // Content-Encoding; "" for none
	partSize    int
	sem         chan struct{} // bounds the parts in flight

	buf      *bytes.Buffer // bytes not sent yet
	uploadID *string
	parts    []types.CompletedPart
	wg       sync.WaitGroup
	mu       sync.Mutex // guards parts and err
	err      error
}

func (u *upload) Write(p []byte) (int, error) { return u.buf.Write(p) }

// sendFull sends the full parts buf holds.
func (u *upload) sendFull(ctx context.Context) error {
	for u.buf.Len() >= u.partSize {
		if err := u.sendPart(ctx, u.buf.Next(u.partSize)); err != nil {
			return err
		}
	}
	return nil
}

// sendPart uploads data as the next part in the background, starting the
// multipart upload first if needed.
func (u *upload) sendPart(ctx context.Context, data []byte) error {
	if err := u.failure(); err != nil {
		return err
	}
	if u.uploadID == nil {
		out, err := u.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: &u.bucket, Key: &u.key, Metadata: u.meta, ContentType: &u.contentType, ContentEncoding: u.contentEncoding(),
		})
		if err != nil {
			return fmt.Errorf("starting the multipart upload of %q: %w", u.key, err)
		}
		u.uploadID = out.UploadId
	}
	if len(u.parts) == maxParts {
		return fmt.Errorf("uploading %q: more than %d parts; raise part.size", u.key, maxParts)
	}
	u.mu.Lock() // the goroutines of earlier parts write into parts
	num := int32(len(u.parts) + 1)
	u.parts = append(u.parts, types.CompletedPart{PartNumber: aws.Int32(num)})
	u.mu.Unlock()
	body := bytes.Clone(data) // buf reuses its memory
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	u.wg.Go(func() {
		defer func() { <-u.sem }()
		out, err := u.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &u.bucket, Key: &u.key, UploadId: u.uploadID, PartNumber: aws.Int32(num), Body: bytes.NewReader(body),
		})
		u.mu.Lock()
		defer u.mu.Unlock()
		if err != nil {
			if u.err == nil {
				u.err = fmt.Errorf("uploading part %d of %q: %w", num, u.key, err)
			}
			return
		}
		u.parts[num-1].ETag = out.ETag
	})
	return nil
}

func (u *upload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *upload) contentEncoding() *string {
	if u.encoding == "" {
		return nil
	}
	return &u.encoding
}

// finish sends what is left and completes the object. It returns
// errExists when the key holds an object already.
func (u *upload) finish(ctx context.Context) error {
	if u.uploadID == nil {
		_, err := u.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &u.bucket, Key: &u.key, Body: bytes.NewReader(u.buf.Bytes()), IfNoneMatch: aws.String("*"),
			Metadata: u.meta, ContentType: &u.contentType, ContentEncoding: u.contentEncoding(),
		})
		switch {
		case isPreconditionFailed(err):
			return errExists
		case err != nil:
			return fmt.Errorf("writing %q: %w", u.key, err)
		}
		return nil
	}
	err := u.sendFull(ctx)
	if err == nil && u.buf.Len() > 0 {
		err = u.sendPart(ctx, u.buf.Bytes())
	}
	u.wg.Wait()
	if err == nil {
		err = u.failure()
	}
	if err == nil {
		_, err = u.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &u.bucket, Key: &u.key, UploadId: u.uploadID, IfNoneMatch: aws.String("*"),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: u.parts},
		})
		switch {
		case isPreconditionFailed(err):
			err = errExists
		case err != nil:
			err = fmt.Errorf("completing the multipart upload of %q: %w", u.key, err)
		}
	}
	if err != nil {
		u.abort(ctx)
	}
	return err
}

// abort aborts the multipart upload, if one was started, after the parts
// in flight ended. It runs on when ctx is done (a stopping task).
func (u *upload) abort(ctx context.Context) {
	u.wg.Wait()
	if u.uploadID == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	// An abort that fails leaves the upload to the stale-upload sweep.
	_, _ = u.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &u.bucket, Key: &u.key, UploadId: u.uploadID})
	u.uploadID = nil
}
