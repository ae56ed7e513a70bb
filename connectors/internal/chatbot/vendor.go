package chatbot

import (
	"strings"
	"time"

	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors"
)

// Common returns the common settings; a vendor's settings embed Settings,
// so they have it too.
func (s Settings) Common() Settings { return s }

// Client is what a vendor's robot keeps besides its settings: the HTTP
// client, the clock, in app mode the access token, and what it must never
// show.
type Client struct {
	HTTP   *cehttp.Client
	Now    func() time.Time
	Tokens *TokenSource // nil: the robot uses no access token
	// Hide are credentials no config field holds alone (the token in a
	// webhook URL), masked like the access tokens.
	Hide []string
}

// Redact masks the access tokens the robot fetched and Hide.
func (c *Client) Redact(text string) string {
	for _, h := range c.Hide {
		if len(h) >= 3 {
			text = strings.ReplaceAll(text, h, connectors.Mask)
		}
	}
	if c.Tokens == nil {
		return text
	}
	return c.Tokens.Redact(text)
}

// Type is one chat sink type: how it reads its config and makes its robot.
// S is its settings (embedding Settings).
type Type[S interface{ Common() Settings }] struct {
	// Parse turns a config into settings, naming every bad field, with no
	// network I/O.
	Parse func(connectors.Config) (S, []connectors.FieldError)
	// Robot makes the robot of s; it may set c.Tokens.
	Robot func(s S, c Client) Robot
}

// Check is the spec's Check.
func (ty Type[S]) Check(cfg connectors.Config) []connectors.FieldError {
	_, errs := ty.Parse(cfg)
	return errs
}

// Connector is the spec's New.
func (ty Type[S]) Connector() connectors.Connector {
	return NewConnector(func(cfg connectors.Config, guard *cehttp.Guard) (*Sink, error) { return ty.open(cfg, nil, guard) })
}

// Open builds the sink of an instance; now is its clock (nil: time.Now).
func (ty Type[S]) Open(cfg connectors.Config, now func() time.Time) (*Sink, error) {
	return ty.open(cfg, now, nil)
}

// open is Open with the Guard of the sink's HTTP client.
func (ty Type[S]) open(cfg connectors.Config, now func() time.Time, guard *cehttp.Guard) (*Sink, error) {
	s, errs := ty.Parse(cfg)
	if len(errs) > 0 {
		return nil, &connectors.ValidationError{Fields: errs}
	}
	if now == nil {
		now = time.Now
	}
	common := s.Common()
	common.Client.Guard = guard
	client := cehttp.NewClient(common.Client)
	return NewSink(ty.Robot(s, Client{HTTP: client, Now: now}), common, client, now), nil
}
