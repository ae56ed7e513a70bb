package email

import "errors"

// Reasons an event cannot become a mail; each dead-letters that event.
var (
	errNoRecipients = errors.New("no recipient: to, cc and bcc are all empty for this event")
	errLineBreak    = errors.New("holds a line break")
	errNonASCII     = errors.New("non-ASCII addresses (SMTPUTF8) are not supported")
)
