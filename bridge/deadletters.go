package bridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/mesh"
)

// Dead letters as an operator sees them: what sits in a dead-letter topic
// (its stored events, read without a consumer group from a start
// sequence), and re-driving them to the topic they came from.

// ErrNotSupported is returned when the mesh engine lacks an optional
// extension an operation needs (mesh.EventReader, mesh.TopicStats, ...).
var ErrNotSupported = errors.New("not supported by this mesh engine")

// Limits of dead-letter listings.
const (
	DefaultDeadLetterPage = 100
	MaxDeadLetterPage     = 1000
	// maxDataPreview bounds the data shown per listed event.
	maxDataPreview = 4096
	// redrivePage is how many events a re-drive reads at a time.
	redrivePage = 256
)

// DeadLetterEntry is one stored event of a dead-letter topic: who gave up
// on it, why, after how many attempts, where it came from, and the event.
// Everything in it is untrusted input (event data, error texts of sinks).
type DeadLetterEntry struct {
	Seq  uint64    `json:"seq"`  // stream sequence of the copy
	Time time.Time `json:"time"` // when the copy was stored
	// Error (deliveryerror), By (deliveryby), Attempts (deliveryattempts)
	// and Topic (deliverytopic): empty for an event that is no dead-letter
	// copy.
	Error    string `json:"error,omitempty"`
	By       string `json:"by,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	Topic    string `json:"topic,omitempty"`

	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	EventTime       time.Time `json:"eventTime,omitzero"`
	DataContentType string    `json:"datacontenttype,omitempty"`
	// Data is the data as text (truncated to 4 KiB), or base64 when it is
	// not UTF-8 (DataBase64); DataSize is its full size.
	Data       string `json:"data,omitempty"`
	DataBase64 bool   `json:"dataBase64,omitempty"`
	DataSize   int    `json:"dataSize"`
}

// ListDeadLetters returns up to limit events of topic stored at or after
// stream sequence from (0: the oldest), and the sequence to continue from
// (0 when the listing reached the end).
func (b *Bridge) ListDeadLetters(ctx context.Context, topic string, from uint64, limit int) ([]DeadLetterEntry, uint64, error) {
	if err := mesh.ValidateTopic(topic); err != nil {
		return nil, 0, err
	}
	rd, ok := b.opts.Engine.(mesh.EventReader)
	if !ok {
		return nil, 0, fmt.Errorf("listing %q: %w", topic, ErrNotSupported)
	}
	if limit <= 0 {
		limit = DefaultDeadLetterPage
	}
	limit = min(limit, MaxDeadLetterPage)
	evs, err := rd.ReadEvents(ctx, topic, from, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %q: %w", topic, err)
	}
	var next uint64
	if len(evs) > limit {
		next = evs[limit].Seq
		evs = evs[:limit]
	}
	out := make([]DeadLetterEntry, len(evs))
	for i, se := range evs {
		out[i] = deadLetterEntry(se)
	}
	return out, next, nil
}

func deadLetterEntry(se mesh.StoredEvent) DeadLetterEntry {
	e := se.Event
	d := DeadLetterEntry{
		Seq: se.Seq, Time: se.Time,
		ID: e.ID(), Source: e.Source(), Type: e.Type(), Subject: e.Subject(), EventTime: e.Time(),
		DataContentType: e.DataContentType(), DataSize: len(e.Data()),
	}
	ext := e.Extensions()
	d.Error = extString(ext[ExtDeliveryError])
	d.By = extString(ext[ExtDeliveryBy])
	d.Topic = extString(ext[ExtDeliveryTopic])
	d.Attempts, _ = strconv.Atoi(extString(ext[ExtDeliveryAttempts]))
	data := e.Data()
	if utf8.Valid(data) {
		d.Data = truncate(string(data), maxDataPreview)
	} else {
		d.Data, d.DataBase64 = base64.StdEncoding.EncodeToString(data[:min(len(data), maxDataPreview)]), true
	}
	return d
}

func extString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

// RedriveRequest says which events of a dead-letter topic to re-drive.
type RedriveRequest struct {
	// Seqs are the stream sequences of the copies (from ListDeadLetters);
	// All takes every event stored when the re-drive starts instead.
	Seqs []uint64 `json:"seqs,omitempty"`
	All  bool     `json:"all,omitempty"`
	// By keeps only the copies whose deliveryby is this
	// ("subscription/orders-to-billing").
	By string `json:"by,omitempty"`
	// To publishes to this topic instead of each event's deliverytopic.
	To string `json:"to,omitempty"`
	// Keep leaves the copies in the dead-letter topic; by default each is
	// deleted once its event is stored again on its topic.
	Keep bool `json:"keep,omitempty"`
}

// RedriveResult says what a re-drive did.
type RedriveResult struct {
	Redriven int           `json:"redriven"` // events stored again on their topic
	Deleted  int           `json:"deleted"`  // copies removed from the dead-letter topic
	Skipped  []RedriveSkip `json:"skipped"`  // copies left where they are, and why
}

// RedriveSkip is a copy a re-drive left alone.
type RedriveSkip struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// Redrive publishes events of the dead-letter topic topic again to the
// topic each came from (its deliverytopic), without the delivery
// extensions, so that every consumer group of that topic receives it
// again. Each is published with the dedup key "redrive <topic> <seq>": a
// re-drive of the same copy inside the mesh's duplicate window is stored
// once, while a re-drive is never mistaken for the original publish. Then,
// unless req.Keep, the copy is deleted from the dead-letter topic (after,
// never before, its event is stored again). On error, the result says what
// was done before it.
func (b *Bridge) Redrive(ctx context.Context, topic string, req RedriveRequest) (RedriveResult, error) {
	res := RedriveResult{Skipped: []RedriveSkip{}}
	if err := mesh.ValidateTopic(topic); err != nil {
		return res, err
	}
	if req.To != "" {
		if err := mesh.ValidateTopic(req.To); err != nil {
			return res, fmt.Errorf("to: %w", err)
		}
	}
	if req.All == (len(req.Seqs) > 0) {
		return res, fmt.Errorf("%w: give either seqs or all", ErrInvalidRedrive)
	}
	rd, ok := b.opts.Engine.(mesh.EventReader)
	if !ok {
		return res, fmt.Errorf("re-driving %q: %w", topic, ErrNotSupported)
	}
	del, _ := b.opts.Engine.(mesh.EventDeleter)
	one := func(se mesh.StoredEvent) error {
		if req.By != "" && extString(se.Event.Extensions()[ExtDeliveryBy]) != req.By {
			return nil
		}
		skipped, err := b.redriveOne(ctx, topic, se, req, del, &res)
		if skipped != "" {
			res.Skipped = append(res.Skipped, RedriveSkip{Seq: se.Seq, Reason: skipped})
		}
		return err
	}
	if !req.All {
		for _, seq := range req.Seqs {
			evs, err := rd.ReadEvents(ctx, topic, seq, 1)
			if err != nil {
				return res, fmt.Errorf("re-driving %q: %w", topic, err)
			}
			if len(evs) == 0 || evs[0].Seq != seq {
				res.Skipped = append(res.Skipped, RedriveSkip{Seq: seq, Reason: "no event of this topic at this sequence"})
				continue
			}
			if err := one(evs[0]); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	// All: the events stored when we start. Copies that fail again while we
	// work come back at the end of the topic; they are not taken again.
	until, err := b.lastSeq(ctx, topic)
	if err != nil {
		return res, err
	}
	for from := uint64(1); ; {
		evs, err := rd.ReadEvents(ctx, topic, from, redrivePage)
		if err != nil {
			return res, fmt.Errorf("re-driving %q: %w", topic, err)
		}
		for _, se := range evs {
			if until > 0 && se.Seq > until {
				return res, nil
			}
			if err := one(se); err != nil {
				return res, err
			}
		}
		if len(evs) < redrivePage {
			return res, nil
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

// ErrInvalidRedrive wraps a message naming what is wrong with a re-drive
// request.
var ErrInvalidRedrive = errors.New("invalid re-drive request")

// redriveOne publishes one copy again and deletes it; it returns why it
// skipped the copy, or an error that ends the re-drive.
func (b *Bridge) redriveOne(ctx context.Context, topic string, se mesh.StoredEvent, req RedriveRequest, del mesh.EventDeleter, res *RedriveResult) (skipped string, err error) {
	target := req.To
	if target == "" {
		target = extString(se.Event.Extensions()[ExtDeliveryTopic])
	}
	switch {
	case target == "":
		return "no deliverytopic: not a dead-letter copy; give \"to\"", nil
	case target == topic:
		return "its topic is the dead-letter topic itself", nil
	case mesh.ValidateTopic(target) != nil:
		return fmt.Sprintf("deliverytopic %q is not a topic", target), nil
	}
	ev := se.Event.Clone()
	for _, x := range []string{ExtDeliveryError, ExtDeliveryAttempts, ExtDeliveryBy, ExtDeliveryTopic} {
		ev.SetExtension(x, nil) // removes it
	}
	if err := Validate(&ev); err != nil {
		return "invalid event: " + err.Error(), nil
	}
	key := "redrive " + topic + " " + strconv.FormatUint(se.Seq, 10)
	if err := b.opts.Engine.Publish(ctx, target, []*event.Event{&ev}, mesh.WithDedupKey(key)); err != nil {
		return "", fmt.Errorf("re-driving event %d of %q to %q: %w", se.Seq, topic, target, err)
	}
	res.Redriven++
	if req.Keep || del == nil {
		return "", nil
	}
	if err := del.DeleteEvent(ctx, topic, se.Seq); err != nil && !errors.Is(err, mesh.ErrEventNotFound) {
		b.logger.Warn("re-driven event stays in the dead-letter topic", "topic", topic, "seq", se.Seq, "error", err)
		return "", nil
	}
	res.Deleted++
	return "", nil
}

// lastSeq is the sequence of the newest event of topic (0: not known).
func (b *Bridge) lastSeq(ctx context.Context, topic string) (uint64, error) {
	ts, ok := b.opts.Engine.(mesh.TopicStats)
	if !ok {
		return 0, nil
	}
	topics, err := ts.Topics(ctx)
	if err != nil {
		return 0, fmt.Errorf("re-driving %q: %w", topic, err)
	}
	for _, t := range topics {
		if t.Name == topic {
			return t.LastSeq, nil
		}
	}
	return 0, nil
}
