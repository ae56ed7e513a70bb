package feishu

import "github.com/meshd/meshd/connectors/internal/chatbot"

// Sign is a custom bot's signature at timestamp (Unix seconds, as sent):
// base64 of HMAC-SHA256 with timestamp, a newline and the secret as the
// key, over an empty message. This is what FeiShu's sample code computes
// (its prose reads as if the string were the message).
func Sign(secret, timestamp string) string {
	return chatbot.HMACBase64(timestamp+"\n"+secret, "")
}
