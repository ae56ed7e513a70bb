// Package feishu is the feishu-sink connector: it posts each event as a
// message of a FeiShu (Lark) bot, made by templates over the event.
//
// Two bot modes: a custom bot's webhook, signed with the bot's secret (the
// timestamp in seconds and the signature in the JSON body; the signature
// is HMAC-SHA256 with timestamp+"\n"+secret as the key over an empty
// message), and an app bot, which sends with a tenant access token fetched
// with the app's id and secret, cached, and refreshed before it expires or
// when FeiShu refuses it; its messages carry the event id as their uuid,
// FeiShu's key against posting a retried message twice.
//
// FeiShu answers with a code: 11232 (frequency limited) backs off; 19021
// (signature or timestamp), 19024 (keyword), 9499 (bad request) and the
// other codes dead-letter the event with FeiShu's msg. A request body above
// 20 KB (webhook) is refused before it is sent. A limiter keeps each bot
// within 5 messages a second and 100 a minute; a batch above it waits.
package feishu

import (
	"slices"
	"time"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// Type is the connector.type of this connector.
const Type = "feishu-sink"

// Config field names (besides chatbot's common ones).
const (
	FieldMode          = chatbot.FieldMode
	FieldWebhook       = chatbot.FieldWebhook
	FieldSecret        = chatbot.FieldSecret
	FieldAppID         = "app.id"
	FieldAppSecret     = chatbot.FieldAppSecret
	FieldReceiveID     = "receive.id"
	FieldReceiveIDType = "receive.id.type"
	FieldAPIURL        = chatbot.FieldAPIURL
	FieldMsgType       = chatbot.FieldMsgType
	FieldTitle         = "title"
	FieldText          = "text"
	FieldContent       = "content"
	FieldChatID        = "chat.id"
	FieldImageKey      = "image.key"
	FieldPostLocale    = "post.locale"
	FieldAtUserIDs     = "at.user.ids"
	FieldAtAll         = chatbot.FieldAtAll
)

// Bot modes.
const (
	ModeWebhook = chatbot.ModeWebhook // a custom bot's webhook
	ModeApp     = chatbot.ModeApp     // an app bot (im/v1/messages)
)

// Message types (FeiShu's msg_type values).
const (
	MsgText        = "text"
	MsgPost        = "post"
	MsgInteractive = "interactive"
	MsgShareChat   = "share_chat"
	MsgImage       = "image"
)

// MsgTypeExtension is the event extension that chooses an event's message
// type over msg.type.
const MsgTypeExtension = "feishumsgtype"

// Defaults.
const (
	DefaultAPIURL = "https://open.feishu.cn"
	DefaultTitle  = "{{.Type}}"
	// DefaultBackoff is how long a bot sends nothing after FeiShu's
	// frequency-limited answer: its limits count per minute.
	DefaultBackoff = time.Minute
)

var msgTypes = []string{MsgText, MsgPost, MsgInteractive, MsgShareChat, MsgImage}

// Spec is the registered spec of feishu-sink.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSink,
	Summary: "Posts each event as a FeiShu (Lark) bot message (custom bot webhook, signed, or an app bot), made by templates.",
	Fields: append([]connectors.Field{
		{Name: FieldMode, Type: connectors.TypeString, Default: ModeWebhook, Enum: []string{ModeWebhook, ModeApp},
			Description: "webhook: a custom bot's webhook; app: an app bot (app.id, app.secret, receive.id)."},
		{Name: FieldWebhook, Type: connectors.TypeString, Secret: true,
			Description: "The custom bot's webhook, https://open.feishu.cn/open-apis/bot/v2/hook/... (mode webhook; it holds the bot's token)."},
		{Name: FieldSecret, Type: connectors.TypeString, Secret: true, Description: "The custom bot's signing secret, if its security setting is signature verification."},
		{Name: FieldAppID, Type: connectors.TypeString, Description: "The app's App ID, cli_... (mode app)."},
		{Name: FieldAppSecret, Type: connectors.TypeString, Secret: true, Description: "The app's App Secret (mode app)."},
		{Name: FieldReceiveID, Type: connectors.TypeString, Description: "Template of the receiver's id, of receive.id.type (mode app), e.g. oc_... for a chat."},
		{Name: FieldReceiveIDType, Type: connectors.TypeString, Default: "chat_id", Enum: []string{"chat_id", "open_id", "user_id", "union_id", "email"},
			Description: "What receive.id is (mode app)."},
		{Name: FieldAPIURL, Type: connectors.TypeString, Default: DefaultAPIURL, Description: "FeiShu's API base URL (mode app); Lark: https://open.larksuite.com."},
		{Name: FieldMsgType, Type: connectors.TypeString, Default: MsgText, Enum: msgTypes,
			Description: "Message type; an event's " + MsgTypeExtension + " extension overrides it."},
		{Name: FieldTitle, Type: connectors.TypeString, Default: DefaultTitle, Description: "Template of the title (post, interactive card header)."},
		{Name: FieldText, Type: connectors.TypeString, Description: "Template of the text (text, post, the card's markdown; default: the event data as text, a JSON string unquoted)."},
		{Name: FieldContent, Type: connectors.TypeString,
			Description: "Template of the message content as JSON, used as it is (webhook: the content object, or the card of interactive; app: the content); when set, title, text, chat.id and image.key are not used."},
		{Name: FieldChatID, Type: connectors.TypeString, Description: "Template of the chat id (oc_...) a share_chat message shares."},
		{Name: FieldImageKey, Type: connectors.TypeString, Description: "Template of the image_key an image message shows."},
		{Name: FieldPostLocale, Type: connectors.TypeString, Default: "zh_cn", Enum: []string{"zh_cn", "en_us", "ja_jp"}, Description: "Language key of a post message."},
		{Name: FieldAtUserIDs, Type: connectors.TypeString, Description: "Template of the open_ids or user_ids to @, comma-separated (text, post, interactive)."},
		{Name: FieldAtAll, Type: connectors.TypeBool, Default: false, Description: "@ everyone (text, post, interactive)."},
	}, chatbot.CommonFields([]string{"5/1s", "100/1m"}, DefaultBackoff, "code 11232")...),
	Defaults: map[string]any{connectors.FieldBatchSize: int64(20)},
	New:      vendor.Connector,
	Check:    vendor.Check,
}

// vendor makes the sinks of feishu-sink.
var vendor = chatbot.Type[*settings]{Parse: parseConfig, Robot: newRobot}

func init() { connectors.Register(Spec) }

// settings is a config ready to use.
type settings struct {
	chatbot.Settings
	appID       string
	receiveType string
	locale      string
}

// modes are what the bot modes need.
var modes = chatbot.Modes{
	App:       []string{FieldAppID, FieldAppSecret, FieldReceiveID},
	Templates: []string{FieldTitle, FieldText, FieldContent, FieldChatID, FieldImageKey, FieldAtUserIDs, FieldReceiveID},
}

// parseConfig turns a config into settings, or names every bad field. It
// does no network I/O; it reads tls.ca.file.
func parseConfig(cfg connectors.Config) (*settings, []connectors.FieldError) {
	common, errs := chatbot.ParseSettings(cfg, modes)
	bad := func(field, reason string) { errs = append(errs, connectors.FieldError{Field: field, Reason: reason}) }
	s := &settings{
		Settings:    common,
		appID:       cfg.String(FieldAppID),
		receiveType: cfg.String(FieldReceiveIDType),
		locale:      cfg.String(FieldPostLocale),
	}
	if s.Tmpl[FieldContent] == nil {
		if s.MsgType == MsgShareChat && s.Tmpl[FieldChatID] == nil {
			bad(FieldChatID, "required with msg.type share_chat (or content)")
		}
		if s.MsgType == MsgImage && s.Tmpl[FieldImageKey] == nil {
			bad(FieldImageKey, "required with msg.type image (or content)")
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// needsAt says whether a message type can @ someone.
func needsAt(typ string) bool {
	return slices.Contains([]string{MsgText, MsgPost, MsgInteractive}, typ)
}
