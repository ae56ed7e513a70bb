package chatgpt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors"
)

// The wire shapes of POST /chat/completions, as the API reference (and
// github.com/openai/openai-go/v3) has them; only what meshd sends and
// reads.

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Temperature         *float64        `json:"temperature,omitempty"`
	MaxCompletionTokens int64           `json:"max_completion_tokens,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *jsonSchema `json:"json_schema,omitempty"`
}

type jsonSchema struct {
	Name   string `json:"name"`
	Schema any    `json:"schema"`
	Strict bool   `json:"strict"`
}

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// apiError is the API's error document.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// maxErrorBytes is how much of an error answer is read: the API's error
// documents are small, but insufficient_quota comes after a long message.
const maxErrorBytes = 8 << 10

// maxAnswerBytes bounds a completion read from the API.
const maxAnswerBytes = 8 << 20

// modelError is a model call that failed: its text is safe to show the
// caller (the API key is masked).
type modelError struct{ msg string }

func (e *modelError) Error() string { return e.msg }

// model calls the chat completions API.
type model struct {
	client   *cehttp.Client
	endpoint string
	header   http.Header
	apiKey   string
	retries  int
	backoff  bridge.Backoff
}

func newModel(cfg connectors.Config, guard *cehttp.Guard) *model {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	key := cfg.String(FieldAPIKey)
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	if org := cfg.String(FieldOrganization); org != "" {
		h.Set("OpenAI-Organization", org)
	}
	if p := cfg.String(FieldProject); p != "" {
		h.Set("OpenAI-Project", p)
	}
	return &model{
		client: cehttp.NewClient(cehttp.ClientConfig{
			Timeout:             cfg.Duration(FieldTimeout),
			MaxIdleConnsPerHost: 16,
			MaxResponseBytes:    maxAnswerBytes,
			MaxErrorBytes:       maxErrorBytes,
			Guard:               guard,
		}),
		endpoint: strings.TrimSuffix(cfg.String(FieldBaseURL), "/") + "/chat/completions",
		header:   h,
		apiKey:   key,
		retries:  int(cfg.Int(FieldRetries)),
		backoff:  bridge.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2, Jitter: 0.2},
	}
}

// complete sends req, retrying what the API says may pass (408, 429 other
// than insufficient_quota, 5xx, a lost connection) after its Retry-After-Ms
// or Retry-After, or a backoff. It returns the first choice's text.
func (m *model) complete(ctx context.Context, req *chatRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("encoding the request: %w", err)
	}
	for attempt := 1; ; attempt++ {
		answer, err := m.call(ctx, body)
		if err == nil {
			return m.choice(answer)
		}
		if ctx.Err() != nil {
			return "", m.fail("the call to the model was abandoned: %v", ctx.Err())
		}
		class, after := bridge.Classify(err)
		apiErr := parseAPIError(err)
		if class == bridge.Permanent || apiErr.isQuota() || attempt > m.retries {
			return "", m.describe(err, apiErr, attempt)
		}
		wait := after
		if wait <= 0 {
			wait = m.backoff.Delay(attempt)
		}
		if !bridge.Sleep(ctx, wait) {
			return "", m.fail("the call to the model was abandoned while waiting to retry: %v", ctx.Err())
		}
	}
}

func (m *model) call(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, bridge.PermanentError(errors.New("building the request to base.url"))
	}
	req.Header = m.header.Clone()
	return m.client.Do(req)
}

// choice reads the first choice of a completion.
func (m *model) choice(answer []byte) (string, error) {
	var resp chatResponse
	if err := json.Unmarshal(answer, &resp); err != nil || resp.Object != "chat.completion" {
		return "", m.fail("the model's answer is not a chat completion")
	}
	if len(resp.Choices) == 0 {
		return "", m.fail("the model answered no choice")
	}
	c := resp.Choices[0]
	switch {
	case c.Message.Refusal != nil && *c.Message.Refusal != "":
		return "", m.fail("the model refused: %s", *c.Message.Refusal)
	case c.FinishReason == "content_filter":
		return "", m.fail("the model's answer was withheld by its content filter")
	case c.Message.Content == nil:
		return "", m.fail("the model answered no content (finish_reason %q)", c.FinishReason)
	case c.FinishReason == "length":
		return "", m.fail("the model's answer was cut at max.tokens")
	}
	return *c.Message.Content, nil
}

// parseAPIError reads the API's error document from a failed call.
func parseAPIError(err error) *apiError {
	var de *bridge.DeliveryError
	if !errors.As(err, &de) || de.StatusCode == 0 || de.Err == nil {
		return nil
	}
	var a apiError
	if json.Unmarshal([]byte(de.Err.Error()), &a) != nil || a.Error.Message == "" && a.Error.Type == "" {
		return nil
	}
	return &a
}

// isQuota: the account is out of credit; retrying cannot help.
func (a *apiError) isQuota() bool {
	return a != nil && (a.Error.Type == "insufficient_quota" || a.Error.Code != nil && *a.Error.Code == "insufficient_quota")
}

func (m *model) describe(err error, a *apiError, attempts int) error {
	var de *bridge.DeliveryError
	status := 0
	if errors.As(err, &de) {
		status = de.StatusCode
	}
	tries := ""
	if attempts > 1 {
		tries = fmt.Sprintf(" (after %d attempts)", attempts)
	}
	switch {
	case a != nil:
		kind := a.Error.Type
		if a.Error.Code != nil && *a.Error.Code != "" && *a.Error.Code != kind {
			kind += "/" + *a.Error.Code
		}
		return m.fail("the model API answered %d %s%s: %s", status, kind, tries, a.Error.Message)
	case status != 0:
		return m.fail("the model API answered %d%s: %s", status, tries, de.Err.Error())
	default:
		return m.fail("calling the model API%s: %v", tries, err)
	}
}

// fail builds a modelError, the API key masked.
func (m *model) fail(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(m.apiKey) >= 4 {
		msg = strings.ReplaceAll(msg, m.apiKey, connectors.Mask)
	}
	if len(msg) > 2000 {
		msg = strings.ToValidUTF8(msg[:2000], "") + "…"
	}
	return &modelError{msg: msg}
}
