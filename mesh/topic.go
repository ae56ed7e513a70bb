package mesh

import (
	"fmt"
	"regexp"
)

var topicRe = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// MaxTopicLen is the longest topic name accepted.
const MaxTopicLen = 200

// ValidateTopic checks that topic is dot-separated tokens of letters, digits,
// '-' and '_'.
func ValidateTopic(topic string) error {
	if len(topic) == 0 || len(topic) > MaxTopicLen || !topicRe.MatchString(topic) {
		return fmt.Errorf("%w %q: want dot-separated tokens of letters, digits, '-' and '_', at most %d characters", ErrInvalidTopic, topic, MaxTopicLen)
	}
	return nil
}
