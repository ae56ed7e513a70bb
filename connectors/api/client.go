package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors/worker"
)

// Client calls the connector API of a running meshd.
type Client struct {
	// BaseURL is the admin server, e.g. "http://127.0.0.1:10106".
	BaseURL string
	// HTTP defaults to http.DefaultClient.
	HTTP *http.Client
	// Token is the admin token (admin.token), sent as "Authorization:
	// Bearer <token>" when set.
	Token string
}

// Plugins lists the connector types.
func (c *Client) Plugins(ctx context.Context) ([]Plugin, error) {
	var out []Plugin
	return out, c.do(ctx, http.MethodGet, "/v1/connector-plugins", nil, &out)
}

// List returns the instance names.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodGet, "/v1/connectors", nil, &out)
}

// Create creates an instance.
func (c *Client) Create(ctx context.Context, name string, config map[string]any) (worker.Info, error) {
	var out worker.Info
	return out, c.do(ctx, http.MethodPost, "/v1/connectors", CreateRequest{Name: name, Config: config}, &out)
}

// Get describes an instance.
func (c *Client) Get(ctx context.Context, name string) (worker.Info, error) {
	var out worker.Info
	return out, c.do(ctx, http.MethodGet, "/v1/connectors/"+name, nil, &out)
}

// PutConfig creates or reconfigures an instance.
func (c *Client) PutConfig(ctx context.Context, name string, config map[string]any) (worker.Info, error) {
	var out worker.Info
	return out, c.do(ctx, http.MethodPut, "/v1/connectors/"+name+"/config", config, &out)
}

// Status reports an instance's state.
func (c *Client) Status(ctx context.Context, name string) (worker.Status, error) {
	var out worker.Status
	return out, c.do(ctx, http.MethodGet, "/v1/connectors/"+name+"/status", nil, &out)
}

// Pause pauses an instance.
func (c *Client) Pause(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPut, "/v1/connectors/"+name+"/pause", nil, nil)
}

// Resume resumes an instance.
func (c *Client) Resume(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPut, "/v1/connectors/"+name+"/resume", nil, nil)
}

// Restart restarts an instance.
func (c *Client) Restart(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/connectors/"+name+"/restart", nil, nil)
}

// Delete deletes an instance.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/connectors/"+name, nil, nil)
}

// Offsets lists an instance's committed offsets.
func (c *Client) Offsets(ctx context.Context, name string) ([]worker.Offset, error) {
	var out struct {
		Offsets []worker.Offset `json:"offsets"`
	}
	return out.Offsets, c.do(ctx, http.MethodGet, "/v1/connectors/"+name+"/offsets", nil, &out)
}

// do sends in as JSON and decodes the answer into out. An error answer is
// returned as a problem.Problem.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling meshd admin at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var p problem.Problem
		if json.Unmarshal(data, &p) == nil && p.Title != "" {
			return p
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}
