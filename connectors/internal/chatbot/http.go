package chatbot

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
)

// PostJSON posts body as JSON to target and returns the body of a 2xx
// answer, or an error classified by cehttp.Client.Do. The target is never
// in the error: it may hold a credential.
func PostJSON(ctx context.Context, c *cehttp.Client, target string, header http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, bridge.PermanentError(errors.New("building the request: the URL is malformed"))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.Do(req)
}

// Refused returns the status and the start of the body of a non-2xx
// answer that cehttp.Client.Do turned into err (ok false for other
// errors). Vendors put their error code in that body.
func Refused(err error) (status int, body string, ok bool) {
	var de *bridge.DeliveryError
	if !errors.As(err, &de) || de.StatusCode == 0 || de.Err == nil {
		return 0, "", false
	}
	return de.StatusCode, de.Err.Error(), true
}

// jsonField finds "key": value in a JSON text that may be cut short.
var jsonField = regexp.MustCompile(`"([A-Za-z_]+)"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)`)

// Field returns the value of the first top-level-looking "key" in a JSON
// object that may be cut short (the start of an error answer): strings
// unquoted, numbers as written. ok is false if it is not there.
func Field(body, key string) (string, bool) {
	for _, m := range jsonField.FindAllStringSubmatch(body, -1) {
		if m[1] != key {
			continue
		}
		v := m[2]
		if v != "" && v[0] == '"' {
			var s string
			if json.Unmarshal([]byte(v), &s) != nil {
				return "", false
			}
			return s, true
		}
		return v, true
	}
	return "", false
}

// TooLarge is the failure of a message above the vendor's size limit.
func TooLarge(what string, size, limit int) error {
	return fmt.Errorf("%s is %d bytes, above the vendor's limit of %d", what, size, limit)
}

// HMACBase64 is the base64 (standard, padded) of HMAC-SHA256 of msg with
// key: the signatures of both vendors' custom robots, which differ in what
// they take as key and message.
func HMACBase64(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
