package chatgpt_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The fake OpenAI API: POST /v1/chat/completions, checked as the API
// reference documents it (method, path, no query, bearer key, organization
// and project headers, a JSON body of exactly the expected request), and
// answered with the reference's response and error documents. The
// TestFakeMatchesOpenAISDK test holds it to the official Go SDK.

const (
	apiKey  = "sk-test-meshd-0123456789abcdef"
	orgID   = "org-meshd"
	project = "proj_meshd"
)

// completion is the API reference's chat completion document with
// content as the first choice's message.
func completion(content string) string {
	c, _ := json.Marshal(content)
	return `{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": ` + string(c) + `,
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_06737a9306"
}`
}

// apiError is the API's error document, as its servers indent it.
func apiError(message, typ, code string) string {
	m, _ := json.Marshal(message)
	c := "null"
	if code != "" {
		c = `"` + code + `"`
	}
	return `{
    "error": {
        "message": ` + string(m) + `,
        "type": "` + typ + `",
        "param": null,
        "code": ` + c + `
    }
}
`
}

var (
	errQuota = apiError("You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
		"insufficient_quota", "insufficient_quota")
	errRateLimit = apiError("Rate limit reached for gpt-4o-mini in organization org-meshd on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.",
		"requests", "rate_limit_exceeded")
	errServer = apiError("The server had an error while processing your request. Sorry about that!", "server_error", "")
	errAPIKey = apiError("Incorrect API key provided: sk-test-********************cdef. You can find your API key at https://platform.openai.com/account/api-keys.",
		"invalid_request_error", "invalid_api_key")
)

// answer is one scripted response.
type answer struct {
	status int
	header map[string]string
	body   string
	delay  time.Duration
}

func ok(content string) answer { return answer{status: 200, body: completion(content)} }

// fakeOpenAI serves the scripted answers in order (the last one repeats).
type fakeOpenAI struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	expect  string // the exact request body wanted ("" : any well-formed one)
	answers []answer
	calls   []time.Time
	bodies  [][]byte
	bad     []string // what deviated from the reference
}

func newFakeOpenAI(t *testing.T) *fakeOpenAI {
	f := &fakeOpenAI{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		assert.Empty(t, f.bad, "requests that deviate from the API reference")
	})
	return f
}

func (f *fakeOpenAI) baseURL() string { return f.srv.URL + "/v1" }

func (f *fakeOpenAI) script(expect string, answers ...answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expect, f.answers, f.calls, f.bodies = expect, answers, nil, nil
}

func (f *fakeOpenAI) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

func (f *fakeOpenAI) lastBody() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		return nil
	}
	return f.bodies[len(f.bodies)-1]
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	f.bodies = append(f.bodies, body)
	complain := func(format string, args ...any) { f.bad = append(f.bad, fmt.Sprintf(format, args...)) }
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" || r.URL.RawQuery != "" {
		complain("%s %s: want POST /v1/chat/completions", r.Method, r.URL)
	}
	for h, want := range map[string]string{"Authorization": "Bearer " + apiKey, "Content-Type": "application/json", "OpenAI-Organization": orgID, "OpenAI-Project": project} {
		if got := r.Header.Get(h); got != want {
			complain("header %s = %q, want %q", h, got, want)
		}
	}
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" || len(req.Messages) == 0 {
		complain("body %s: want a JSON object with model and messages", body)
	}
	if f.expect != "" && !jsonEqual(f.expect, string(body)) {
		complain("body\n%s\nwant\n%s", body, f.expect)
	}
	a := answer{status: 500, body: errServer}
	if len(f.answers) > 0 {
		a = f.answers[0]
		if len(f.answers) > 1 {
			f.answers = f.answers[1:]
		}
	}
	f.mu.Unlock()
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
