package dingtalk

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// maxMsgParam is the most bytes of an app robot's msgParam.
const maxMsgParam = 15000

// webhookMessage is the body a custom robot's webhook takes.
type webhookMessage struct {
	MsgType    string          `json:"msgtype"`
	Text       json.RawMessage `json:"text,omitempty"`
	Markdown   json.RawMessage `json:"markdown,omitempty"`
	Link       json.RawMessage `json:"link,omitempty"`
	ActionCard json.RawMessage `json:"actionCard,omitempty"`
	FeedCard   json.RawMessage `json:"feedCard,omitempty"`
	At         *at             `json:"at,omitempty"`
	// MsgUUID is the event id: DingTalk's key against posting a retried
	// message twice.
	MsgUUID string `json:"msgUuid"`
}

type at struct {
	AtMobiles []string `json:"atMobiles,omitempty"`
	AtUserIDs []string `json:"atUserIds,omitempty"`
	IsAtAll   bool     `json:"isAtAll,omitempty"`
}

// appMessage is the body of POST /v1.0/robot/groupMessages/send.
type appMessage struct {
	MsgParam           string `json:"msgParam"`
	MsgKey             string `json:"msgKey"`
	OpenConversationID string `json:"openConversationId"`
	RobotCode          string `json:"robotCode"`
	CoolAppCode        string `json:"coolAppCode,omitempty"`
}

// The message objects, by type. App robots' msgParam objects of the same
// types (sampleText, sampleMarkdown, sampleLink, sampleActionCard) have the
// same keys.
type (
	textObj struct {
		Content string `json:"content"`
	}
	markdownObj struct {
		Title string `json:"title"`
		Text  string `json:"text"`
	}
	linkObj struct {
		Title      string `json:"title"`
		Text       string `json:"text"`
		MessageURL string `json:"messageUrl"`
		PicURL     string `json:"picUrl,omitempty"`
	}
	actionCardObj struct {
		Title       string `json:"title"`
		Text        string `json:"text"`
		SingleTitle string `json:"singleTitle"`
		SingleURL   string `json:"singleURL"`
	}
	feedCardObj struct {
		Links []feedCardLink `json:"links"`
	}
	feedCardLink struct {
		Title      string `json:"title"`
		MessageURL string `json:"messageURL"`
		PicURL     string `json:"picURL,omitempty"`
	}
)

// message renders the message of e: its type and the JSON of the type's
// object, and whom to @ (webhook mode).
func (s *settings) message(e *event.Event) (typ string, obj []byte, who *at, err error) {
	allowed := msgTypes
	if s.Mode == ModeApp {
		allowed = []string{MsgText, MsgMarkdown, MsgLink, MsgActionCard}
	}
	typ, err = chatbot.MsgType(e, MsgTypeExtension, s.MsgType, allowed)
	if err != nil {
		return "", nil, nil, err
	}
	r := chatbot.NewRenderer(e, s.Tmpl)
	if s.Mode == ModeWebhook && (typ == MsgText || typ == MsgMarkdown) {
		who = s.at(r)
	}
	if s.Tmpl[FieldContent] != nil {
		obj = r.Object(FieldContent)
		return typ, obj, who, r.Err
	}
	text := r.TextOr(FieldText)
	var v any
	switch typ {
	case MsgText:
		v = textObj{Content: withAt(text, who)}
	case MsgMarkdown:
		v = markdownObj{Title: r.Render(FieldTitle), Text: withAt(text, who)}
	case MsgLink:
		v = linkObj{Title: r.Render(FieldTitle), Text: text, MessageURL: r.Required(FieldURL), PicURL: r.Render(FieldPicURL)}
	case MsgActionCard:
		v = actionCardObj{Title: r.Render(FieldTitle), Text: text, SingleTitle: r.Render(FieldButtonTitle), SingleURL: r.Required(FieldURL)}
	case MsgFeedCard:
		v = feedCardObj{Links: []feedCardLink{{Title: r.Render(FieldTitle), MessageURL: r.Required(FieldURL), PicURL: r.Render(FieldPicURL)}}}
	}
	if r.Err != nil {
		return "", nil, nil, r.Err
	}
	obj, err = json.Marshal(v)
	return typ, obj, who, err
}

// at renders whom to @; nil for no one.
func (s *settings) at(r *chatbot.Renderer) *at {
	mobiles, users := r.List(FieldAtMobiles), r.List(FieldAtUserIDs)
	if len(mobiles) == 0 && len(users) == 0 && !s.AtAll {
		return nil
	}
	return &at{AtMobiles: mobiles, AtUserIDs: users, IsAtAll: s.AtAll}
}

// withAt appends "@who" for each mobile or user id the text does not
// name yet: DingTalk highlights an @ only where the text holds it.
func withAt(text string, who *at) string {
	if who == nil {
		return text
	}
	for _, id := range append(append([]string(nil), who.AtMobiles...), who.AtUserIDs...) {
		if !strings.Contains(text, "@"+id) {
			text += " @" + id
		}
	}
	return text
}

// webhookBody is the JSON a custom robot's webhook takes for e.
func (s *settings) webhookBody(e *event.Event) ([]byte, error) {
	typ, obj, who, err := s.message(e)
	if err != nil {
		return nil, err
	}
	m := webhookMessage{MsgType: typ, At: who, MsgUUID: e.ID()}
	switch typ {
	case MsgText:
		m.Text = obj
	case MsgMarkdown:
		m.Markdown = obj
	case MsgLink:
		m.Link = obj
	case MsgActionCard:
		m.ActionCard = obj
	case MsgFeedCard:
		m.FeedCard = obj
	}
	return json.Marshal(m)
}

// appBody is the JSON of POST /v1.0/robot/groupMessages/send for e.
func (s *settings) appBody(e *event.Event) ([]byte, error) {
	typ, obj, _, err := s.message(e)
	if err != nil {
		return nil, err
	}
	if len(obj) > maxMsgParam {
		return nil, fmt.Errorf("msgParam: %w", chatbot.TooLarge("the message", len(obj), maxMsgParam))
	}
	return json.Marshal(appMessage{
		MsgParam:           string(obj),
		MsgKey:             appMsgKeys[typ],
		OpenConversationID: s.convID,
		RobotCode:          s.robotCode,
		CoolAppCode:        s.coolApp,
	})
}
