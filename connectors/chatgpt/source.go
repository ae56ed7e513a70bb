package chatgpt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/webhook"
)

var (
	_ connectors.SourceTask  = (*Task)(nil)
	_ connectors.Committer   = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

// Request types.
const (
	RequestChat  = "CHAT"
	RequestParse = "PARSE"
)

// request is EventMesh's ChatGPT request. JSON names match case
// insensitively, as encoding/json does; unknown names are refused.
type request struct {
	RequestType     string          `json:"requestType"`
	Text            string          `json:"text"`
	Fields          json.RawMessage `json:"fields"`
	Source          string          `json:"source"`
	Subject         string          `json:"subject"`
	Type            string          `json:"type"`
	DataContentType string          `json:"datacontenttype"`
	ID              string          `json:"id"`
	Time            string          `json:"time"`
}

// Task serves the endpoint: each request calls the model in its handler,
// then hands the event to Poll through the Endpoint and answers once the
// mesh stored it.
type Task struct {
	webhook.Endpoint
	token        []byte
	model        *model
	modelName    string
	systemPrompt string
	parsePrompt  string
	temperature  *float64
	maxTokens    int64
	eventType    string
	eventSource  string
	storeTimeout time.Duration
	maxBodyBytes int64
}

// Start serves the path on the webhook listener.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	if t.TaskContext() == nil {
		return errors.New("chatgpt-source task started without Init")
	}
	name := t.TaskContext().Connector()
	t.token = []byte(cfg.String(FieldToken))
	t.model = newModel(cfg, t.TaskContext().Guard())
	t.modelName = cfg.String(FieldModel)
	t.systemPrompt = cfg.String(FieldSystemPrompt)
	t.parsePrompt = cfg.String(FieldParsePrompt)
	if s := cfg.String(FieldTemperature); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", FieldTemperature, s)
		}
		t.temperature = &v
	}
	t.maxTokens = cfg.Int(FieldMaxTokens)
	t.eventType = cfg.String(FieldEventType)
	t.eventSource = cfg.String(FieldEventSource)
	if t.eventSource == "" {
		t.eventSource = "/chatgpt/" + url.PathEscape(name)
	}
	t.storeTimeout = cfg.Duration(FieldStoreTimeout)
	t.maxBodyBytes = cfg.Int(FieldMaxBodyBytes)
	return t.Serve(cfg, http.HandlerFunc(t.serve))
}

// Stop leaves the path (requests not stored yet get 503) and drops the
// model API's idle connections.
func (t *Task) Stop(ctx context.Context) error {
	err := t.Endpoint.Stop(ctx)
	if t.model != nil {
		t.model.client.Close()
	}
	return err
}

func (t *Task) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem.Write(w, problem.New(problem.CodeMethodNotAllowed, "send requests with POST"))
		return
	}
	if len(t.token) > 0 && !webhook.CheckToken(r.Header, t.token) {
		problem.Write(w, problem.New(problem.CodeUnauthorized, "missing or wrong token"))
		return
	}
	var req request
	if err := problem.ReadJSON(w, r, &req, t.maxBodyBytes, problem.CodeInvalidRequest); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	e, chat, err := t.prepare(&req)
	if err != nil {
		problem.Write(w, problem.New(problem.CodeInvalidRequest, err.Error()))
		return
	}
	answer, err := t.model.complete(r.Context(), chat.req)
	if err != nil {
		t.TaskContext().Logger().Warn("chatgpt-source: model call failed", "error", err)
		problem.Write(w, problem.New(problem.CodeUpstream, err.Error()))
		return
	}
	data, err := chat.data(answer)
	if err != nil {
		problem.Write(w, problem.New(problem.CodeUpstream, err.Error()))
		return
	}
	e.DataEncoded = data
	if err := bridge.Validate(e); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	if err := t.Submit(r.Context(), []event.Event{*e}, t.storeTimeout); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	body, err := cehttp.EncodeStructured(e)
	if err != nil {
		problem.Write(w, problem.New(problem.CodeInternal, ""))
		return
	}
	w.Header().Set("Content-Type", cehttp.MediaTypeStructured)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
}

// chat is the model call a request makes and how its answer becomes data.
type chat struct {
	req  *chatRequest
	data func(answer string) ([]byte, error)
}

// prepare checks a request and builds its event (everything but the data)
// and its model call. The event's attributes come from the request or the
// config only: the model's answer becomes data, nothing else.
func (t *Task) prepare(req *request) (*event.Event, *chat, error) {
	kind := strings.ToUpper(strings.TrimSpace(req.RequestType))
	if kind == "" {
		kind = RequestChat // EventMesh's default
	}
	if kind != RequestChat && kind != RequestParse {
		return nil, nil, fmt.Errorf("requestType %q: want CHAT or PARSE", abbrev(req.RequestType))
	}
	if strings.TrimSpace(req.Text) == "" {
		return nil, nil, errors.New("text: required")
	}
	e := event.New()
	id := req.ID
	if id == "" {
		id = uuid.NewString()
	}
	e.SetID(id)
	typ := req.Type
	if typ == "" {
		typ = t.eventType
	}
	if typ == "" {
		typ = "com.openai.chat." + strings.ToLower(kind)
	}
	e.SetType(typ)
	src := req.Source
	if src == "" {
		src = t.eventSource
	}
	if types.ParseURIRef(src) == nil {
		return nil, nil, fmt.Errorf("source %q is not a URI-reference", abbrev(src))
	}
	e.SetSource(src)
	if req.Subject != "" {
		e.SetSubject(req.Subject)
	}
	tm := time.Now().UTC()
	if req.Time != "" {
		p, err := types.ParseTime(req.Time)
		if err != nil {
			return nil, nil, fmt.Errorf("time %q is not an RFC 3339 timestamp", abbrev(req.Time))
		}
		tm = p
	}
	e.SetTime(tm)

	c := &chat{req: &chatRequest{Model: t.modelName, Temperature: t.temperature, MaxCompletionTokens: t.maxTokens}}
	if kind == RequestParse {
		fields, err := parseFields(req.Fields)
		if err != nil {
			return nil, nil, err
		}
		if req.DataContentType != "" && !isJSON(req.DataContentType) {
			return nil, nil, fmt.Errorf("datacontenttype %q: PARSE publishes a JSON object", abbrev(req.DataContentType))
		}
		e.SetDataContentType("application/json")
		c.req.Messages = []chatMessage{{Role: "system", Content: t.parsePrompt}, {Role: "user", Content: req.Text}}
		c.req.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: &jsonSchema{Name: "fields", Schema: schema(fields), Strict: true}}
		c.data = func(answer string) ([]byte, error) { return checkAnswer(answer, fields) }
	} else {
		if req.Fields != nil && string(req.Fields) != "null" {
			return nil, nil, errors.New("fields: only for PARSE")
		}
		ct := req.DataContentType
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		if _, _, err := mime.ParseMediaType(ct); err != nil {
			return nil, nil, fmt.Errorf("datacontenttype %q is not a media type", abbrev(ct))
		}
		e.SetDataContentType(ct)
		if t.systemPrompt != "" {
			c.req.Messages = append(c.req.Messages, chatMessage{Role: "system", Content: t.systemPrompt})
		}
		c.req.Messages = append(c.req.Messages, chatMessage{Role: "user", Content: req.Text})
		c.data = func(answer string) ([]byte, error) {
			if isJSON(ct) && !json.Valid([]byte(answer)) {
				return nil, fmt.Errorf("the model's reply is not JSON, but datacontenttype is %s", ct)
			}
			return []byte(answer), nil
		}
	}
	return &e, c, nil
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
