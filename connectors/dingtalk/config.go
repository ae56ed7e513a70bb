// Package dingtalk is the dingtalk-sink connector: it posts each event as
// a message of a DingTalk group robot, made by templates over the event.
//
// Two robot modes: a custom robot's webhook (the common one), signed with
// the robot's secret (HMAC-SHA256 over timestamp+"\n"+secret, in the
// query), and an app robot of an internal app (enterprise mode), which
// sends with an access token fetched with the app's key and secret, cached,
// and refreshed before it expires or when DingTalk refuses it.
//
// DingTalk answers 200 with an error code: 130101 (too fast; DingTalk then
// locks the robot for ten minutes) backs off; the other codes (310000
// keyword, signature, timestamp or IP; 300001 and 300005 token) dead-letter
// the event with DingTalk's errmsg. A limiter keeps each robot within 20
// messages a minute; a batch above it waits.
package dingtalk

import (
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// Type is the connector.type of this connector.
const Type = "dingtalk-sink"

// Config field names (besides chatbot's common ones).
const (
	FieldMode           = chatbot.FieldMode
	FieldWebhook        = chatbot.FieldWebhook
	FieldSecret         = chatbot.FieldSecret
	FieldAppKey         = "app.key"
	FieldAppSecret      = chatbot.FieldAppSecret
	FieldRobotCode      = "robot.code"
	FieldConversationID = "conversation.id"
	FieldCoolAppCode    = "coolapp.code"
	FieldAPIURL         = chatbot.FieldAPIURL
	FieldMsgType        = chatbot.FieldMsgType
	FieldTitle          = "title"
	FieldText           = "text"
	FieldURL            = "url"
	FieldPicURL         = "pic.url"
	FieldButtonTitle    = "button.title"
	FieldContent        = "content"
	FieldAtMobiles      = "at.mobiles"
	FieldAtUserIDs      = "at.user.ids"
	FieldAtAll          = chatbot.FieldAtAll
)

// Robot modes.
const (
	ModeWebhook = chatbot.ModeWebhook // a custom robot's webhook
	ModeApp     = chatbot.ModeApp     // an internal app's robot (groupMessages/send)
)

// Message types (DingTalk's msgtype values).
const (
	MsgText       = "text"
	MsgMarkdown   = "markdown"
	MsgLink       = "link"
	MsgActionCard = "actionCard"
	MsgFeedCard   = "feedCard"
)

// MsgTypeExtension is the event extension that chooses an event's message
// type over msg.type.
const MsgTypeExtension = "dingtalkmsgtype"

// Defaults.
const (
	DefaultAPIURL = "https://api.dingtalk.com"
	DefaultTitle  = "{{.Type}}"
	// DefaultBackoff is how long DingTalk locks a custom robot that sent
	// more than 20 messages in a minute.
	DefaultBackoff = 10 * time.Minute
)

var msgTypes = []string{MsgText, MsgMarkdown, MsgLink, MsgActionCard, MsgFeedCard}

// appMsgKeys are the message templates (msgKey) of app robots, by type.
var appMsgKeys = map[string]string{
	MsgText:       "sampleText",
	MsgMarkdown:   "sampleMarkdown",
	MsgLink:       "sampleLink",
	MsgActionCard: "sampleActionCard",
}

// Spec is the registered spec of dingtalk-sink.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSink,
	Summary: "Posts each event as a DingTalk group robot message (custom robot webhook, signed, or an app robot), made by templates.",
	Fields: append([]connectors.Field{
		{Name: FieldMode, Type: connectors.TypeString, Default: ModeWebhook, Enum: []string{ModeWebhook, ModeApp},
			Description: "webhook: a custom robot's webhook; app: the robot of an internal app (app.key, app.secret, robot.code, conversation.id)."},
		{Name: FieldWebhook, Type: connectors.TypeString, Secret: true,
			Description: "The custom robot's webhook as DingTalk shows it, https://oapi.dingtalk.com/robot/send?access_token=... (mode webhook; it holds the robot's token)."},
		{Name: FieldSecret, Type: connectors.TypeString, Secret: true,
			Description: "The custom robot's signing secret (SEC...), if its security setting is signing."},
		{Name: FieldAppKey, Type: connectors.TypeString, Description: "The internal app's AppKey (Client ID) (mode app)."},
		{Name: FieldAppSecret, Type: connectors.TypeString, Secret: true, Description: "The internal app's AppSecret (Client Secret) (mode app)."},
		{Name: FieldRobotCode, Type: connectors.TypeString, Description: "The app robot's robotCode (mode app)."},
		{Name: FieldConversationID, Type: connectors.TypeString, Description: "The group's openConversationId (mode app)."},
		{Name: FieldCoolAppCode, Type: connectors.TypeString, Description: "The group cool app's code, when the robot was installed through one (mode app)."},
		{Name: FieldAPIURL, Type: connectors.TypeString, Default: DefaultAPIURL, Description: "DingTalk's API base URL (mode app)."},
		{Name: FieldMsgType, Type: connectors.TypeString, Default: MsgText, Enum: msgTypes,
			Description: "Message type; an event's " + MsgTypeExtension + " extension overrides it. App robots send text, markdown, link and actionCard."},
		{Name: FieldTitle, Type: connectors.TypeString, Default: DefaultTitle, Description: "Template of the title (markdown, link, actionCard, feedCard)."},
		{Name: FieldText, Type: connectors.TypeString, Description: "Template of the text (default: the event data as text; a JSON string unquoted)."},
		{Name: FieldURL, Type: connectors.TypeString, Description: "Template of the link opened by a link message, an actionCard's button or a feedCard item."},
		{Name: FieldPicURL, Type: connectors.TypeString, Description: "Template of the picture URL of a link message or feedCard item."},
		{Name: FieldButtonTitle, Type: connectors.TypeString, Default: "View", Description: "Template of an actionCard's button title."},
		{Name: FieldContent, Type: connectors.TypeString,
			Description: "Template of the whole message object of the type, as JSON (e.g. an actionCard with btns, a feedCard with several links); when set, title, text, url, pic.url and button.title are not used."},
		{Name: FieldAtMobiles, Type: connectors.TypeString, Description: "Template of the mobiles to @, comma-separated (mode webhook; text and markdown)."},
		{Name: FieldAtUserIDs, Type: connectors.TypeString, Description: "Template of the user ids to @, comma-separated (mode webhook; text and markdown)."},
		{Name: FieldAtAll, Type: connectors.TypeBool, Default: false, Description: "@ everyone (mode webhook; text and markdown)."},
	}, chatbot.CommonFields([]string{"20/1m"}, DefaultBackoff, "errcode 130101; DingTalk locks the robot for ten minutes")...),
	Defaults: map[string]any{connectors.FieldBatchSize: int64(20)},
	New:      vendor.Connector,
	Check:    vendor.Check,
}

// vendor makes the sinks of dingtalk-sink.
var vendor = chatbot.Type[*settings]{Parse: parseConfig, Robot: newRobot}

func init() { connectors.Register(Spec) }

// settings is a config ready to use.
type settings struct {
	chatbot.Settings
	appKey    string
	robotCode string
	convID    string
	coolApp   string
}

// modes are what the robot modes need.
var modes = chatbot.Modes{
	App:         []string{FieldAppKey, FieldAppSecret, FieldRobotCode, FieldConversationID},
	AppOptional: []string{FieldCoolAppCode},
	WebhookOnly: []string{FieldAtMobiles, FieldAtUserIDs, FieldAtAll},
	WebhookNote: "(app robots cannot @)",
	CheckWebhook: func(u *url.URL) string {
		if u.Query().Get("access_token") == "" {
			return "want the webhook with its access_token query parameter, as DingTalk shows it"
		}
		return ""
	},
	Templates: []string{FieldTitle, FieldText, FieldURL, FieldPicURL, FieldButtonTitle, FieldContent, FieldAtMobiles, FieldAtUserIDs},
}

// parseConfig turns a config into settings, or names every bad field. It
// does no network I/O; it reads tls.ca.file.
func parseConfig(cfg connectors.Config) (*settings, []connectors.FieldError) {
	common, errs := chatbot.ParseSettings(cfg, modes)
	bad := func(field, reason string) { errs = append(errs, connectors.FieldError{Field: field, Reason: reason}) }
	s := &settings{
		Settings:  common,
		appKey:    cfg.String(FieldAppKey),
		robotCode: cfg.String(FieldRobotCode),
		convID:    cfg.String(FieldConversationID),
		coolApp:   cfg.String(FieldCoolAppCode),
	}
	if _, ok := appMsgKeys[s.MsgType]; s.Mode == ModeApp && !ok {
		bad(FieldMsgType, s.MsgType+" is not sent by app robots (text, markdown, link, actionCard)")
	}
	if slices.Contains([]string{MsgLink, MsgActionCard, MsgFeedCard}, s.MsgType) && s.Tmpl[FieldURL] == nil && s.Tmpl[FieldContent] == nil {
		bad(FieldURL, "required with msg.type "+s.MsgType+" (or content)")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// webhookURL adds the signature, if any, to the webhook at ms (Unix
// milliseconds): timestamp and sign, the signature URL-encoded once, after
// the webhook's own access_token.
func (s *settings) webhookURL(ms int64) string {
	if s.Secret == "" {
		return s.Webhook
	}
	u, err := url.Parse(s.Webhook)
	if err != nil { // checked by parseConfig
		return s.Webhook
	}
	ts := strconv.FormatInt(ms, 10)
	u.RawQuery += "&timestamp=" + ts + "&sign=" + url.QueryEscape(Sign(s.Secret, ts))
	return u.String()
}
