package websocket

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/bridge/problem"
)

// conn is one client connection. Reads happen on one goroutine; writes of
// data messages are serialised by wmu; pings and close frames use
// WriteControl, which gorilla allows concurrently with everything else.
type conn struct {
	ws  *websocket.Conn
	cfg Config

	wmu sync.Mutex // serialises WriteMessage
}

// reply is every message the server sends that is not an event.
type reply struct {
	// Ack names an event the mesh stored (publish).
	Ack string `json:"ack,omitempty"`
	// Error is the problem, as the HTTP API would answer it.
	Error *problem.Problem `json:"error,omitempty"`
	// ID is the event the error is about, when it could be read.
	ID string `json:"id,omitempty"`
	// IDs are the events of a batch the error is about.
	IDs []string `json:"ids,omitempty"`
}

func (c *conn) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *conn) writeError(p problem.Problem, id string, ids []string) error {
	return c.writeJSON(reply{Error: &p, ID: id, IDs: ids})
}

// close sends a close frame (best effort).
func (c *conn) close(code int, reason string) {
	if len(reason) > 120 { // a close frame's payload is at most 125 bytes
		reason = reason[:120]
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

// pongWait is how long a client may stay silent, pongs included.
func (c *conn) pongWait() time.Duration { return 2 * c.cfg.PingInterval }

// keepAlive pings every PingInterval until stop is closed. A client that
// does not answer is caught by the read deadline that pongs extend.
func (c *conn) keepAlive(stop <-chan struct{}) {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.pongWait()))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.pongWait()))
	})
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
				_ = c.ws.Close() // ends the read loop
				return
			}
		}
	}
}

// readMessage reads the next data message, at most MaxMessageBytes. Any
// data counts as a sign of life.
func (c *conn) readMessage() ([]byte, error) {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.pongWait()))
	limit := c.cfg.MaxMessageBytes
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return b, nil
}

// isTooLarge reports whether err is readMessage's over-the-limit error.
func isTooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// normalClose reports whether err is the client going away as expected.
func normalClose(err error) bool {
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
