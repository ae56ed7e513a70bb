package dingtalk

import "github.com/meshd/meshd/connectors/internal/chatbot"

// Sign is a custom robot's signature at timestamp (Unix milliseconds, as
// sent): base64 of HMAC-SHA256 with the secret as key over timestamp, a
// newline and the secret. It goes into the query URL-encoded once.
func Sign(secret, timestamp string) string {
	return chatbot.HMACBase64(secret, timestamp+"\n"+secret)
}
