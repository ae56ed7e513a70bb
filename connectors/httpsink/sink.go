package httpsink

import (
	"context"
	"fmt"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask    = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

// Task posts events one by one, in batch order, with the codec and the
// answer classification of subscription delivery (bridge/cehttp).
type Task struct {
	url        string
	structured bool
	headers    http.Header
	client     *cehttp.Client
	guard      *cehttp.Guard // from Init: which addresses may be dialled
}

// Init takes the Guard of the task's HTTP client.
func (t *Task) Init(tc connectors.TaskContext) { t.guard = tc.Guard() }

// Start builds the HTTP client.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	t.url = cfg.String(FieldURL)
	t.structured = cfg.String(FieldMode) == "structured"
	t.headers = http.Header{}
	for k, v := range cfg.Map(FieldHeaders) {
		t.headers.Set(k, v)
	}
	for k, v := range cfg.Map(FieldSecretHeaders) {
		t.headers.Set(k, v)
	}
	tlsCfg, err := tlsconf.Client{
		CAFile:             cfg.String(FieldTLSCA),
		CertFile:           cfg.String(FieldTLSCert),
		KeyFile:            cfg.String(FieldTLSKey),
		InsecureSkipVerify: cfg.Bool(FieldTLSInsecure),
	}.Config()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	t.client = cehttp.NewClient(cehttp.ClientConfig{Timeout: cfg.Duration(FieldTimeout), TLS: tlsCfg, Guard: t.guard})
	return nil
}

// Stop closes idle connections.
func (t *Task) Stop(context.Context) error {
	if t.client != nil {
		t.client.Close()
	}
	return nil
}

// Put posts each event; the failed ones are named in a
// *connectors.PartialError.
func (t *Task) Put(ctx context.Context, events []event.Event) error {
	failed := map[int]error{}
	for i := range events {
		if err := t.client.Send(ctx, t.url, &events[i], t.structured, t.headers); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed[i] = err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}
