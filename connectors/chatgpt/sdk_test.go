package chatgpt_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fake is held to the official Go SDK so that it cannot drift from
// the API: for the same CHAT and PARSE requests the SDK sends what meshd
// sends (the fake checks the SDK's body against meshd's, and the headers
// as for meshd), and the SDK decodes the fake's completion and error
// documents into its own types.
func TestFakeMatchesOpenAISDK(t *testing.T) {
	e := newEnv(t, map[string]any{"system.prompt": "Be brief.", "temperature": "0.2", "max.tokens": 64})
	e.ai.script("", ok("Hello"))
	code, body := e.ask(t, `{"text":"Say hello"}`)
	require.Equal(t, http.StatusCreated, code, body)
	meshdChat := e.ai.lastBody()
	e.ai.script("", ok(`{"name":"Ada Lovelace"}`))
	code, body = e.ask(t, `{"requestType":"PARSE","text":"Ada Lovelace","fields":"name:full name"}`)
	require.Equal(t, http.StatusCreated, code, body)
	meshdParse := e.ai.lastBody()

	client := openai.NewClient(option.WithBaseURL(e.ai.baseURL()+"/"), option.WithAPIKey(apiKey),
		option.WithOrganization(orgID), option.WithProject(project), option.WithMaxRetries(0))

	e.ai.script(string(meshdChat), ok("Hello! How can I assist you today?"))
	c, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:               "gpt-4o-mini",
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hello")},
		Temperature:         openai.Float(0.2),
		MaxCompletionTokens: openai.Int(64),
	})
	require.NoError(t, err)
	assert.JSONEq(t, string(meshdChat), string(e.ai.lastBody()), "the SDK's CHAT request is meshd's")
	assert.Equal(t, "chat.completion", string(c.Object))
	assert.Equal(t, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", c.ID)
	require.Len(t, c.Choices, 1)
	assert.Equal(t, "Hello! How can I assist you today?", c.Choices[0].Message.Content)
	assert.Equal(t, "stop", c.Choices[0].FinishReason)
	assert.Equal(t, int64(29), c.Usage.TotalTokens)

	var sent struct {
		Messages       []map[string]string `json:"messages"`
		ResponseFormat struct {
			JSONSchema struct {
				Schema map[string]any `json:"schema"`
			} `json:"json_schema"`
		} `json:"response_format"`
	}
	require.NoError(t, json.Unmarshal(meshdParse, &sent))
	require.Len(t, sent.Messages, 2)
	e.ai.script(string(meshdParse), ok(`{"name":"Ada Lovelace"}`))
	c, err = client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:       "gpt-4o-mini",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(sent.Messages[0]["content"]), openai.UserMessage("Ada Lovelace")},
		Temperature: openai.Float(0.2), MaxCompletionTokens: openai.Int(64),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "fields", Schema: sent.ResponseFormat.JSONSchema.Schema, Strict: openai.Bool(true)},
		}},
	})
	require.NoError(t, err)
	assert.JSONEq(t, string(meshdParse), string(e.ai.lastBody()), "the SDK's PARSE request (json_schema response format) is meshd's")
	assert.JSONEq(t, `{"name":"Ada Lovelace"}`, c.Choices[0].Message.Content)

	for _, tc := range []struct {
		status          int
		body            string
		typ, code, text string
	}{
		{429, errQuota, "insufficient_quota", "insufficient_quota", "You exceeded your current quota"},
		{429, errRateLimit, "requests", "rate_limit_exceeded", "Rate limit reached"},
		{401, errAPIKey, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"},
		{500, errServer, "server_error", "", "The server had an error"},
	} {
		e.ai.script("", answer{status: tc.status, body: tc.body})
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		})
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr, tc.typ)
		assert.Equal(t, tc.status, apiErr.StatusCode)
		assert.Equal(t, tc.typ, apiErr.Type)
		assert.Equal(t, tc.code, apiErr.Code)
		assert.Contains(t, apiErr.Message, tc.text)
	}
}
