package feishu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// FeiShu's answer codes.
const (
	codeOK = 0
	// codeFrequencyLimited is a custom bot's "too fast" (100/min, 5/s).
	codeFrequencyLimited = 11232
	// codeBadRequest is a malformed custom bot message, and, with the msg
	// "too many request", also a rate limit.
	codeBadRequest = 9499
	// codeChatRateLimited is an app bot's per-chat rate limit (5 QPS).
	codeChatRateLimited = 230020
	// codeAPIRateLimited is the API gateway's rate limit.
	codeAPIRateLimited = 99991400
	// codeInvalidToken refuses a tenant access token that is not (or no
	// longer) valid.
	codeInvalidToken = 99991663
)

// Paths of the app bot API.
const (
	pathTenantToken = "/open-apis/auth/v3/tenant_access_token/internal"
	pathMessages    = "/open-apis/im/v1/messages"
)

// contentType is the Content-Type the app API documents.
const contentType = "application/json; charset=utf-8"

var _ chatbot.Robot = (*robot)(nil)

// robot posts to one FeiShu bot.
type robot struct {
	chatbot.Client // Tokens in mode app
	s              *settings
}

func newRobot(s *settings, c chatbot.Client) chatbot.Robot {
	r := &robot{Client: c, s: s}
	if u, err := url.Parse(s.Webhook); err == nil && s.Webhook != "" {
		r.Hide = append(r.Hide, path.Base(u.Path)) // the bot's token
	}
	if s.Mode == ModeApp {
		r.Tokens = chatbot.NewTokenSource(r.fetchToken, c.Now)
	}
	return r
}

// Prepare builds the message of e for the bot's mode.
func (r *robot) Prepare(e *event.Event) (func(ctx context.Context) error, error) {
	if r.s.Mode == ModeApp {
		body, err := r.s.appBody(e)
		return chatbot.SendLater(body, err, r.sendApp)
	}
	m, err := r.s.webhookMessage(e)
	return chatbot.SendLater(m, err, r.sendWebhook)
}

// answer is the code and msg of a FeiShu answer (StatusCode and
// StatusMessage are an old custom bot answer's).
type answer struct {
	Code          *int   `json:"code"`
	Msg           string `json:"msg"`
	StatusCode    *int   `json:"StatusCode"`
	StatusMessage string `json:"StatusMessage"`
}

// sendWebhook signs m now, posts it and classifies FeiShu's code.
func (r *robot) sendWebhook(ctx context.Context, m webhookMessage) error {
	if r.s.Secret != "" {
		m.Timestamp = strconv.FormatInt(r.Now().Unix(), 10)
		m.Sign = Sign(r.s.Secret, m.Timestamp)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return bridge.PermanentError(err)
	}
	resp, err := chatbot.PostJSON(ctx, r.HTTP, r.s.Webhook, nil, body)
	code, msg, known := codeOf(resp, err)
	switch {
	case !known && err != nil:
		return fmt.Errorf("posting to the FeiShu webhook: %w", err)
	case !known:
		return bridge.RetryError(errors.New("FeiShu answered 2xx without a code"), 0)
	case code == codeOK && err == nil:
		return nil
	}
	return r.classify(code, msg, err)
}

// classify turns a code FeiShu answered (with err, the HTTP error if the
// status was not 2xx) into its class.
func (r *robot) classify(code int, msg string, err error) error {
	verr := fmt.Errorf("FeiShu answered code %d: %s", code, msg)
	switch {
	case code == codeFrequencyLimited, code == codeChatRateLimited, code == codeAPIRateLimited,
		code == codeBadRequest && strings.Contains(strings.ToLower(msg), "too many request"):
		return chatbot.Backoff(verr, r.s.Backoff)
	case err != nil:
		if status, _, ok := chatbot.Refused(err); ok && status >= 500 {
			_, after := bridge.Classify(err)
			return bridge.RetryError(verr, after)
		}
	}
	// 19021 (signature or timestamp), 19022 (IP), 19024 (keyword), 9499
	// (bad request), 230001 (bad parameter), ...: the same answer again.
	return bridge.PermanentError(verr)
}

// codeOf reads FeiShu's code and msg from a 2xx answer's body, or from the
// start of a refused answer.
func codeOf(resp []byte, err error) (code int, msg string, ok bool) {
	if err != nil {
		_, body, refused := chatbot.Refused(err)
		if !refused {
			return 0, "", false
		}
		c, ok := chatbot.Field(body, "code")
		if !ok {
			return 0, "", false
		}
		code, cerr := strconv.Atoi(c)
		msg, _ = chatbot.Field(body, "msg")
		return code, msg, cerr == nil
	}
	var a answer
	if json.Unmarshal(resp, &a) != nil {
		return 0, "", false
	}
	switch {
	case a.Code != nil:
		return *a.Code, a.Msg, true
	case a.StatusCode != nil:
		return *a.StatusCode, a.StatusMessage, true
	}
	return 0, "", false
}

// sendApp posts body with the tenant access token, fetching a new token
// once if FeiShu refuses the cached one.
func (r *robot) sendApp(ctx context.Context, body []byte) error {
	target := r.s.APIURL + pathMessages + "?receive_id_type=" + url.QueryEscape(r.s.receiveType)
	return r.SendWithToken(ctx, "tenant access token", func(ctx context.Context, tok string) error {
		h := http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {contentType}}
		resp, err := chatbot.PostJSON(ctx, r.HTTP, target, h, body)
		code, msg, known := codeOf(resp, err)
		switch {
		case !known && err != nil:
			return fmt.Errorf("sending with the FeiShu app bot: %w", err)
		case !known:
			return bridge.RetryError(errors.New("FeiShu answered 2xx without a code"), 0)
		case code == codeOK && err == nil:
			return nil
		case code == codeInvalidToken:
			return chatbot.TokenRefused(fmt.Errorf("FeiShu answered code %d: %s", code, msg))
		}
		return r.classify(code, msg, err)
	})
}

// tokenAnswer is the answer of tenant_access_token/internal.
type tokenAnswer struct {
	Code   *int   `json:"code"`
	Msg    string `json:"msg"`
	Token  string `json:"tenant_access_token"`
	Expire int64  `json:"expire"`
}

// fetchToken asks FeiShu for the app's tenant access token. A refusal of
// the app's id or secret holds the events until the config is fixed.
func (r *robot) fetchToken(ctx context.Context) (string, time.Duration, error) {
	body, _ := json.Marshal(map[string]string{"app_id": r.s.appID, "app_secret": r.s.AppSecret})
	resp, err := chatbot.PostJSON(ctx, r.HTTP, r.s.APIURL+pathTenantToken, http.Header{"Content-Type": {contentType}}, body)
	if err != nil {
		_, _, refused := chatbot.CredentialsRefused(err)
		code, msg, known := codeOf(resp, err)
		if refused && known {
			return "", 0, bridge.UnavailableError(fmt.Errorf("FeiShu refused the app's credentials (app.id, app.secret): code %d: %s", code, msg), 0)
		}
		return "", 0, fmt.Errorf("fetching the FeiShu tenant access token: %w", err)
	}
	var a tokenAnswer
	if json.Unmarshal(resp, &a) != nil || a.Code == nil {
		return "", 0, bridge.RetryError(errors.New("fetching the FeiShu tenant access token: the answer holds no code"), 0)
	}
	if *a.Code != codeOK {
		return "", 0, bridge.UnavailableError(fmt.Errorf("FeiShu refused the app's credentials (app.id, app.secret): code %d: %s", *a.Code, a.Msg), 0)
	}
	if a.Token == "" || a.Expire <= 0 {
		return "", 0, bridge.RetryError(errors.New("fetching the FeiShu tenant access token: the answer holds no tenant_access_token and expire"), 0)
	}
	return a.Token, time.Duration(a.Expire) * time.Second, nil
}
