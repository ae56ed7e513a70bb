package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	rmqerrors "github.com/apache/rocketmq-client-go/v2/errors"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

// fakeSender answers each SendSync with the next of its results.
type fakeSender struct {
	results []*primitive.SendResult
	errs    []error
	calls   [][]*primitive.Message
}

func (f *fakeSender) Start() error    { return nil }
func (f *fakeSender) Shutdown() error { return nil }
func (f *fakeSender) SendSync(_ context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error) {
	i := len(f.calls)
	f.calls = append(f.calls, msgs)
	if i >= len(f.results) {
		return &primitive.SendResult{Status: primitive.SendOK}, nil
	}
	return f.results[i], f.errs[i]
}

func fakeTask(t *testing.T, f *fakeSender) *SinkTask {
	t.Helper()
	task := &SinkTask{producer: f, timeout: time.Second, nameservers: []string{"127.0.0.1:1"}}
	var err error
	task.topic, _ = bridge.ParseTemplate("orders")
	task.tags, _ = bridge.ParseTemplate("")
	task.keys, err = bridge.ParseTemplate("{id}")
	require.NoError(t, err)
	return task
}

func events(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.New()
		out[i].SetID(fmt.Sprint(i))
		out[i].SetSource("/test")
		out[i].SetType("t")
	}
	return out
}

// A nil SendResult, or one whose String would panic (no queue), is an
// error, not a panic.
func TestSinkSurvivesOddSendResults(t *testing.T) {
	f := &fakeSender{
		results: []*primitive.SendResult{nil, {Status: primitive.SendFlushDiskTimeout}, primitive.NewSendResult()},
		errs:    []error{nil, nil, errors.New("CODE: 13, DESC: the message is illegal")},
	}
	task := fakeTask(t, f)
	for _, want := range []string{"no result", "FLUSH_DISK_TIMEOUT", "illegal"} {
		err := task.Put(t.Context(), events(1))
		var pe *connectors.PartialError
		require.ErrorAs(t, err, &pe)
		assert.ErrorContains(t, pe.Failed[0], want)
	}
}

// The broker's answers and the client's errors are classified.
func TestSinkClassifiesErrors(t *testing.T) {
	task := fakeTask(t, &fakeSender{})
	for _, c := range []struct {
		err  error
		want bridge.Class
	}{
		{errors.New("CODE: 13, DESC: the message is illegal"), bridge.Permanent},
		{errors.New("CODE: 2, DESC: [PC_SYNCHRONIZED]broker busy"), bridge.Unavailable},
		{errors.New("CODE: 14, DESC: service not available now"), bridge.Unavailable},
		{errors.New("CODE: 1, DESC: org.apache.rocketmq.acl.common.AclException: Check signature failed"), bridge.Unavailable},
		{errors.New("CODE: 1, DESC: something else"), bridge.Retry},
		{errors.New("CODE: 17, DESC: topic not exist"), bridge.Retry},
		{rmqerrors.ErrRequestTimeout, bridge.Unavailable},
		{errors.New("something unexpected"), bridge.Retry},
		{fmt.Errorf("dial: %w", &timeoutError{}), bridge.Unavailable},
		{errors.New("the topic=orders route info not found"), bridge.Unavailable}, // no name server at 127.0.0.1:1
	} {
		class, _ := bridge.Classify(task.classify(t.Context(), "orders", c.err))
		assert.Equal(t, c.want, class, "%v", c.err)
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// A batch the broker refuses as illegal is sent again message by message,
// so only the illegal one is dead-lettered.
func TestSinkFindsTheIllegalMessageOfABatch(t *testing.T) {
	illegal := errors.New("CODE: 13, DESC: the message is illegal")
	f := &fakeSender{
		results: []*primitive.SendResult{nil, {Status: primitive.SendOK}, nil, {Status: primitive.SendOK}},
		errs:    []error{illegal, nil, illegal, nil},
	}
	task := fakeTask(t, f)
	err := task.Put(t.Context(), events(3))
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	assert.Len(t, pe.Failed, 1)
	class, _ := bridge.Classify(pe.Failed[1])
	assert.Equal(t, bridge.Permanent, class)
	require.Len(t, f.calls, 4)
	assert.Len(t, f.calls[0], 3, "first as one batch")
}
