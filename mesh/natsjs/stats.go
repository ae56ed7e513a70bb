package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

var (
	_ mesh.TopicStats   = (*Engine)(nil)
	_ mesh.GroupStats   = (*Engine)(nil)
	_ mesh.EventReader  = (*Engine)(nil)
	_ mesh.EventDeleter = (*Engine)(nil)
)

// maxTopicTimes bounds the topics whose first and last times Topics looks
// up (two requests each); the others are listed with counts only.
const maxTopicTimes = 200

// Topics lists the topics of the stream with their event counts (the
// stream's subject details), estimated bytes, and the times of their first
// and last events.
func (e *Engine) Topics(ctx context.Context) ([]mesh.TopicInfo, error) {
	if e.closed.Load() {
		return nil, mesh.ErrClosed
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	s, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("reading stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(e.prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("reading stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	}
	st := info.State
	out := make([]mesh.TopicInfo, 0, len(st.Subjects))
	for subj, n := range st.Subjects {
		topic, ok := strings.CutPrefix(subj, e.prefix)
		if !ok || n == 0 {
			continue
		}
		ti := mesh.TopicInfo{Name: topic, Events: n}
		if st.Msgs > 0 {
			ti.Bytes = uint64(float64(st.Bytes) * float64(n) / float64(st.Msgs))
		}
		out = append(out, ti)
	}
	slices.SortFunc(out, func(a, b mesh.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	for i := range out[:min(len(out), maxTopicTimes)] {
		subj := e.prefix + out[i].Name
		if m, err := s.GetMsg(ctx, st.FirstSeq, jetstream.WithGetMsgSubject(subj)); err == nil {
			out[i].First, out[i].FirstSeq = m.Time, m.Sequence
		}
		if m, err := s.GetLastMsgForSubject(ctx, subj); err == nil {
			out[i].Last, out[i].LastSeq = m.Time, m.Sequence
		}
	}
	return out, nil
}

// GroupInfo reads the durable consumer of group on topic.
func (e *Engine) GroupInfo(ctx context.Context, topic, group string) (mesh.GroupInfo, error) {
	if e.closed.Load() {
		return mesh.GroupInfo{}, mesh.ErrClosed
	}
	if _, err := e.subject(topic); err != nil {
		return mesh.GroupInfo{}, err
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	name, err := e.durable(ctx, group, topic)
	if err != nil {
		return mesh.GroupInfo{}, fmt.Errorf("reading group %q on %q: %w", group, topic, e.classify(ctx, err))
	}
	c, err := e.js.Consumer(ctx, e.cfg.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return mesh.GroupInfo{}, fmt.Errorf("group %q on %q: %w", group, topic, mesh.ErrGroupNotFound)
	}
	if err != nil {
		return mesh.GroupInfo{}, fmt.Errorf("reading group %q on %q: %w", group, topic, e.classify(ctx, err))
	}
	ci := c.CachedInfo()
	return mesh.GroupInfo{
		Pending:     ci.NumPending,
		Unacked:     ci.NumAckPending,
		Redelivered: ci.NumRedelivered,
		Delivered:   ci.Delivered.Stream,
		AckFloor:    ci.AckFloor.Stream,
		Waiting:     ci.NumWaiting,
	}, nil
}

// ReadEvents reads stored events of topic one by one (the stream's "next
// message by subject"), without a consumer. An event whose headers do not
// decode is skipped.
func (e *Engine) ReadEvents(ctx context.Context, topic string, from uint64, limit int) ([]mesh.StoredEvent, error) {
	if e.closed.Load() {
		return nil, mesh.ErrClosed
	}
	subj, err := e.subject(topic)
	if err != nil {
		return nil, err
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	s, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("reading stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	}
	var out []mesh.StoredEvent
	for seq := max(from, 1); len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("reading %q at %d: %w", topic, seq, e.classify(ctx, err))
		}
		seq = m.Sequence + 1
		ev, err := decode(m.Header, m.Data)
		if err != nil {
			e.log.Debug("skipping undecodable stored event", "topic", topic, "stream_seq", m.Sequence, "error", err)
			continue
		}
		out = append(out, mesh.StoredEvent{Seq: m.Sequence, Time: m.Time, Event: ev})
	}
	return out, nil
}

// DeleteEvent removes the stored event at seq after checking that it is
// an event of topic.
func (e *Engine) DeleteEvent(ctx context.Context, topic string, seq uint64) error {
	if e.closed.Load() {
		return mesh.ErrClosed
	}
	subj, err := e.subject(topic)
	if err != nil {
		return err
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	s, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return fmt.Errorf("reading stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Subject != subj {
		return fmt.Errorf("deleting event %d of %q: %w", seq, topic, mesh.ErrEventNotFound)
	}
	if err != nil {
		return fmt.Errorf("deleting event %d of %q: %w", seq, topic, e.classify(ctx, err))
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("deleting event %d of %q: %w", seq, topic, e.classify(ctx, err))
	}
	return nil
}
