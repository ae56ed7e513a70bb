package feishu

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// Size limits FeiShu documents.
const (
	// maxWebhookBody is the most bytes of a custom bot's request body.
	maxWebhookBody = 20 * 1024
	// maxTextContent and maxRichContent bound an app bot's content: text,
	// and post or interactive.
	maxTextContent = 150 * 1024
	maxRichContent = 30 * 1024
	// maxUUID is the longest uuid FeiShu takes.
	maxUUID = 50
)

// signPlaceholder stands for timestamp and sign when a webhook body is
// measured before it is signed: the same lengths as the real ones.
const (
	tsPlaceholder   = "1700000000"
	signPlaceholder = "e3MJ8Q5llVxGJ8pVkGPBhexDAgjvYqpjPP1GkY9XceI="
)

// webhookMessage is the body a custom bot's webhook takes.
type webhookMessage struct {
	Timestamp string          `json:"timestamp,omitempty"`
	Sign      string          `json:"sign,omitempty"`
	MsgType   string          `json:"msg_type"`
	Content   json.RawMessage `json:"content,omitempty"`
	Card      json.RawMessage `json:"card,omitempty"`
}

// appMessage is the body of POST /open-apis/im/v1/messages.
type appMessage struct {
	ReceiveID string `json:"receive_id"`
	MsgType   string `json:"msg_type"`
	Content   string `json:"content"`
	UUID      string `json:"uuid"`
}

// The content objects.
type (
	textContent struct {
		Text string `json:"text"`
	}
	postElem struct {
		Tag    string `json:"tag"`
		Text   string `json:"text,omitempty"`
		UserID string `json:"user_id,omitempty"`
	}
	postBody struct {
		Title   string       `json:"title"`
		Content [][]postElem `json:"content"`
	}
	card struct {
		Header   cardHeader `json:"header"`
		Elements []cardElem `json:"elements"`
	}
	cardHeader struct {
		Title cardText `json:"title"`
	}
	cardText struct {
		Tag     string `json:"tag"`
		Content string `json:"content"`
	}
	cardElem struct {
		Tag     string `json:"tag"`
		Content string `json:"content"`
	}
)

// content renders the content of e for the mode: its message type and
// the JSON object FeiShu takes as content (the card of an interactive
// webhook message).
func (s *settings) content(e *event.Event) (typ string, obj []byte, err error) {
	typ, err = chatbot.MsgType(e, MsgTypeExtension, s.MsgType, msgTypes)
	if err != nil {
		return "", nil, err
	}
	r := chatbot.NewRenderer(e, s.Tmpl)
	if s.Tmpl[FieldContent] != nil {
		obj = r.Object(FieldContent)
		return typ, obj, r.Err
	}
	var users []string
	if needsAt(typ) {
		users = r.List(FieldAtUserIDs)
		if s.AtAll {
			users = append(users, "all")
		}
	}
	var v any
	switch typ {
	case MsgText:
		var b strings.Builder
		for _, u := range users {
			fmt.Fprintf(&b, `<at user_id="%s"></at> `, html.EscapeString(u))
		}
		v = textContent{Text: b.String() + r.TextOr(FieldText)}
	case MsgPost:
		line := []postElem{{Tag: "text", Text: r.TextOr(FieldText)}}
		for _, u := range users {
			line = append(line, postElem{Tag: "at", UserID: u})
		}
		post := map[string]postBody{s.locale: {Title: r.Render(FieldTitle), Content: [][]postElem{line}}}
		if s.Mode == ModeWebhook {
			v = map[string]any{"post": post}
		} else {
			v = post
		}
	case MsgInteractive:
		var b strings.Builder
		for _, u := range users {
			fmt.Fprintf(&b, "<at id=%s></at> ", u)
		}
		v = card{
			Header:   cardHeader{Title: cardText{Tag: "plain_text", Content: r.Render(FieldTitle)}},
			Elements: []cardElem{{Tag: "markdown", Content: b.String() + r.TextOr(FieldText)}},
		}
	case MsgShareChat:
		if s.Mode == ModeWebhook {
			v = map[string]string{"share_chat_id": r.Required(FieldChatID)}
		} else {
			v = map[string]string{"chat_id": r.Required(FieldChatID)}
		}
	case MsgImage:
		v = map[string]string{"image_key": r.Required(FieldImageKey)}
	}
	if r.Err != nil {
		return "", nil, r.Err
	}
	obj, err = json.Marshal(v)
	return typ, obj, err
}

// webhookMessage is the unsigned webhook message of e, measured against
// FeiShu's 20 KB limit as it will be sent.
func (s *settings) webhookMessage(e *event.Event) (webhookMessage, error) {
	typ, obj, err := s.content(e)
	if err != nil {
		return webhookMessage{}, err
	}
	m := webhookMessage{MsgType: typ, Content: obj}
	if typ == MsgInteractive {
		m.Content, m.Card = nil, obj
	}
	probe := m
	if s.Secret != "" {
		probe.Timestamp, probe.Sign = tsPlaceholder, signPlaceholder
	}
	if b, _ := json.Marshal(probe); len(b) > maxWebhookBody {
		return webhookMessage{}, chatbot.TooLarge("the request body", len(b), maxWebhookBody)
	}
	return m, nil
}

// appBody is the JSON of the app message of e: content within FeiShu's
// limits, the event id as its uuid.
func (s *settings) appBody(e *event.Event) ([]byte, error) {
	typ, obj, err := s.content(e)
	if err != nil {
		return nil, err
	}
	limit := maxRichContent
	if typ == MsgText {
		limit = maxTextContent
	}
	if len(obj) > limit {
		return nil, chatbot.TooLarge("the content", len(obj), limit)
	}
	r := chatbot.NewRenderer(e, s.Tmpl)
	to := r.Required(FieldReceiveID)
	if r.Err != nil {
		return nil, r.Err
	}
	return json.Marshal(appMessage{ReceiveID: to, MsgType: typ, Content: string(obj), UUID: messageUUID(e.ID())})
}

// messageUUID is the uuid of the message of event id: the id itself, or,
// when it is longer than FeiShu takes, a name-based UUID of it.
func messageUUID(id string) string {
	if len(id) <= maxUUID {
		return id
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:meshd:event:"+id)).String()
}
