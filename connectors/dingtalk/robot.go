package dingtalk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// DingTalk's answer codes (custom robot webhooks answer 200 with errcode).
const (
	codeOK       = 0
	codeBusy     = -1     // system busy: try again
	codeTooFast  = 130101 // send too fast, exceed 20 times per minute
	codeTooFast2 = 660026 // sending too many messages per minute
	// codeInvalidToken is the app API's answer to an access token that is
	// not (or no longer) valid.
	codeInvalidToken = "InvalidAuthentication"
)

// Paths of the app robot API.
const (
	pathAccessToken = "/v1.0/oauth2/accessToken"
	pathGroupSend   = "/v1.0/robot/groupMessages/send"
	headerToken     = "x-acs-dingtalk-access-token"
)

var _ chatbot.Robot = (*robot)(nil)

// robot posts to one DingTalk robot.
type robot struct {
	chatbot.Client // Tokens in mode app
	s              *settings
}

func newRobot(s *settings, c chatbot.Client) chatbot.Robot {
	r := &robot{Client: c, s: s}
	if u, err := url.Parse(s.Webhook); err == nil {
		r.Hide = append(r.Hide, u.Query().Get("access_token"))
	}
	if s.Mode == ModeApp {
		r.Tokens = chatbot.NewTokenSource(r.fetchToken, c.Now)
	}
	return r
}

// Prepare builds the message of e for the robot's mode.
func (r *robot) Prepare(e *event.Event) (func(ctx context.Context) error, error) {
	if r.s.Mode == ModeApp {
		body, err := r.s.appBody(e)
		return chatbot.SendLater(body, err, r.sendApp)
	}
	body, err := r.s.webhookBody(e)
	return chatbot.SendLater(body, err, r.sendWebhook)
}

// webhookAnswer is a custom robot webhook's answer.
type webhookAnswer struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// sendWebhook posts body to the webhook, signed now, and classifies
// DingTalk's errcode.
func (r *robot) sendWebhook(ctx context.Context, body []byte) error {
	resp, err := chatbot.PostJSON(ctx, r.HTTP, r.s.webhookURL(r.Now().UnixMilli()), nil, body)
	if err != nil {
		return fmt.Errorf("posting to the DingTalk webhook: %w", err)
	}
	var a webhookAnswer
	if json.Unmarshal(resp, &a) != nil || a.ErrCode == nil {
		return bridge.RetryError(errors.New("DingTalk answered 200 without an errcode"), 0)
	}
	err = fmt.Errorf("DingTalk answered errcode %d: %s", *a.ErrCode, a.ErrMsg)
	switch *a.ErrCode {
	case codeOK:
		return nil
	case codeTooFast, codeTooFast2:
		return chatbot.Backoff(err, r.s.Backoff)
	case codeBusy:
		return bridge.RetryError(err, 0)
	}
	// 310000 (keyword, signature, timestamp or IP), 300001 and 300005
	// (token), a malformed message: sending again gives the same answer.
	return bridge.PermanentError(err)
}

// sendApp posts body with the app's access token, fetching a new token
// once if DingTalk refuses the cached one.
func (r *robot) sendApp(ctx context.Context, body []byte) error {
	return r.SendWithToken(ctx, "access token", func(ctx context.Context, tok string) error {
		h := http.Header{headerToken: {tok}}
		_, err := chatbot.PostJSON(ctx, r.HTTP, r.s.APIURL+pathGroupSend, h, body)
		if err == nil {
			return nil
		}
		status, ans, refused := chatbot.Refused(err)
		if !refused || status >= 500 {
			return fmt.Errorf("sending with the DingTalk app robot: %w", err)
		}
		code, _ := chatbot.Field(ans, "code")
		msg, _ := chatbot.Field(ans, "message")
		verr := fmt.Errorf("DingTalk answered %d %s: %s", status, code, msg)
		switch {
		case code == codeInvalidToken:
			return chatbot.TokenRefused(verr)
		case status == http.StatusTooManyRequests, strings.HasPrefix(code, "Forbidden.AccessDenied.Qp"):
			// The API's QPS/QPM limits: a short wait, not the custom
			// robot's ten-minute lock.
			_, after := bridge.Classify(err)
			return bridge.RetryError(verr, after)
		}
		return bridge.PermanentError(verr)
	})
}

// tokenAnswer is the answer of POST /v1.0/oauth2/accessToken.
type tokenAnswer struct {
	AccessToken string `json:"accessToken"`
	ExpireIn    int64  `json:"expireIn"`
}

// fetchToken asks DingTalk for the app's access token. A refusal of the
// app's key or secret holds the events until the config is fixed.
func (r *robot) fetchToken(ctx context.Context) (string, time.Duration, error) {
	body, _ := json.Marshal(map[string]string{"appKey": r.s.appKey, "appSecret": r.s.AppSecret})
	resp, err := chatbot.PostJSON(ctx, r.HTTP, r.s.APIURL+pathAccessToken, nil, body)
	if err != nil {
		if status, ans, ok := chatbot.CredentialsRefused(err); ok {
			code, _ := chatbot.Field(ans, "code")
			msg, _ := chatbot.Field(ans, "message")
			return "", 0, bridge.UnavailableError(fmt.Errorf("DingTalk refused the app's credentials (app.key, app.secret): %d %s: %s", status, code, msg), 0)
		}
		return "", 0, fmt.Errorf("fetching the DingTalk access token: %w", err)
	}
	var a tokenAnswer
	if json.Unmarshal(resp, &a) != nil || a.AccessToken == "" || a.ExpireIn <= 0 {
		return "", 0, bridge.RetryError(errors.New("fetching the DingTalk access token: the answer holds no accessToken and expireIn"), 0)
	}
	return a.AccessToken, time.Duration(a.ExpireIn) * time.Second, nil
}
