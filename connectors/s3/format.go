package s3

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// Why an event cannot be written.
var (
	errLineBreak = errors.New("its data holds a line break, and format data writes each event on one line")
	errNotJSON   = errors.New("its data is not the JSON its content type says")
)

// record returns the bytes of one event in an object of format, without
// the separator: a structured CloudEvent (jsonl, json) or the data (data),
// always on one line.
func record(format string, e *event.Event) ([]byte, error) {
	var buf bytes.Buffer
	if err := appendRecord(&buf, format, e); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendRecord appends the record of e (see record) to buf; on error buf
// is as it was.
func appendRecord(buf *bytes.Buffer, format string, e *event.Event) error {
	start := buf.Len()
	err := writeRecord(buf, format, e)
	if err != nil {
		buf.Truncate(start)
	}
	return err
}

func writeRecord(buf *bytes.Buffer, format string, e *event.Event) error {
	if format == FormatData {
		d := e.Data()
		if !hasLineBreak(d) {
			buf.Write(d)
			return nil
		}
		if !isJSON(e.DataContentType()) {
			return errLineBreak
		}
		if json.Compact(buf, d) != nil {
			return errNotJSON
		}
		return nil
	}
	// The SDK copies JSON data as it is: check it first, and put data on
	// several lines on one.
	raw := rawJSONData(e)
	if raw && !jsonscan.Valid(e.DataEncoded) {
		return errNotJSON
	}
	start := buf.Len()
	if err := event.WriteJson(e, buf); err != nil {
		return fmt.Errorf("encoding it as a structured CloudEvent: %w", err)
	}
	if raw && hasLineBreak(e.DataEncoded) {
		line := bytes.Clone(buf.Bytes()[start:])
		buf.Truncate(start)
		return json.Compact(buf, line)
	}
	return nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// contentType is the Content-Type of objects of a format.
func contentType(format string) string {
	switch format {
	case FormatJSON:
		return "application/json"
	case FormatJSONL:
		return "application/x-ndjson"
	}
	return "text/plain; charset=utf-8"
}

// objectEncoder writes the records of one object in its format, through
// gzip when asked.
type objectEncoder struct {
	format string
	out    io.Writer
	gz     *gzip.Writer
	n      int
}

func newObjectEncoder(format, compression string, w io.Writer) *objectEncoder {
	enc := &objectEncoder{format: format, out: w}
	if compression == CompressionGzip {
		enc.gz = gzip.NewWriter(w)
		enc.out = enc.gz
	}
	return enc
}

func (enc *objectEncoder) write(rec []byte) error {
	var sep string
	if enc.format == FormatJSON {
		sep = ","
		if enc.n == 0 {
			sep = "["
		}
	}
	enc.n++
	if sep != "" {
		if _, err := io.WriteString(enc.out, sep); err != nil {
			return err
		}
	}
	if _, err := enc.out.Write(rec); err != nil {
		return err
	}
	if enc.format != FormatJSON {
		_, err := io.WriteString(enc.out, "\n")
		return err
	}
	return nil
}

func (enc *objectEncoder) close() error {
	if enc.format == FormatJSON {
		end := "]\n"
		if enc.n == 0 {
			end = "[]\n"
		}
		if _, err := io.WriteString(enc.out, end); err != nil {
			return err
		}
	}
	if enc.gz != nil {
		return enc.gz.Close()
	}
	return nil
}

// rawJSONData reports whether the SDK writes e's data into a structured
// event as it is: JSON data (or data without a content type) that is not
// base64.
func rawJSONData(e *event.Event) bool {
	if e.DataEncoded == nil || e.DataBase64 || e.DeprecatedDataContentEncoding() != "" {
		return false
	}
	ct := e.DataContentType()
	return ct == "" || isJSON(ct)
}

// hasLineBreak reports whether b holds \n or \r (IndexByte is vectorised,
// IndexAny is not).
func hasLineBreak(b []byte) bool {
	return bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(b, '\r') >= 0
}
