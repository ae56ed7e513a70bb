package email

import "errors"

// Reasons an event cannot become a mail; each dead-letters that event.
var (
	errNotText      = errors.New("the event data is not UTF-8 text; give a body template")
	errNoRecipients = errors.New("no recipient: to, cc and bcc are all empty for this event")
	errLineBreak    = errors.New("holds a line break")
	errNonASCII     = errors.New("non-ASCII addresses (SMTPUTF8) are not supported")
)
