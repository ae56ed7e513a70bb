package mesh

import (
	"fmt"
)

// The name rules of the mesh, in one place. A name is dot-separated tokens
// (topics, consumer groups, subscription ids: they become NATS subjects and
// KV keys); a token is letters, digits, '-' and '_' (connector names,
// stream and bucket names, MQTT link names).

// MaxTopicLen is the longest topic name accepted.
const MaxTopicLen = 200

// ValidateTopic checks that topic is dot-separated tokens of letters, digits,
// '-' and '_'; errors wrap ErrInvalidTopic.
func ValidateTopic(topic string) error {
	if !IsName(topic, MaxTopicLen) {
		return fmt.Errorf("%w %q: want dot-separated tokens of letters, digits, '-' and '_', at most %d characters", ErrInvalidTopic, topic, MaxTopicLen)
	}
	return nil
}

// IsName says whether s is 1 to maxLen characters of dot-separated tokens.
func IsName(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if i == start {
				return false // an empty token: leading, trailing or double dot
			}
			start = i + 1
			continue
		}
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// IsToken says whether s is 1 to maxLen letters, digits, '-' and '_'.
func IsToken(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
