package apitoken

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOrigins(t *testing.T) {
	o := NewOrigins([]string{"https://App.example:8443/"})
	cases := []struct {
		origin, host string
		ok           bool
	}{
		{"", "127.0.0.1:10105", true},
		{"https://app.example:8443", "127.0.0.1:10105", true},
		{"https://app.example", "127.0.0.1:10105", false},
		{"http://localhost:3000", "127.0.0.1:10105", true},
		{"http://app.localhost:3000", "127.0.0.1:10105", true},
		{"http://localhost.evil.example", "127.0.0.1:10105", false},
		{"http://127.0.0.1:8080", "127.0.0.1:10105", true},
		{"http://[::1]:8080", "127.0.0.1:10105", true},
		{"https://evil.example", "127.0.0.1:10105", false},
		{"null", "127.0.0.1:10105", false},
		{"http://10.0.0.7:10105", "10.0.0.7:10105", true},
		// DNS rebinding: evil.example resolves to the API's address, and its
		// page is "same-origin" with it.
		{"http://evil.example:10105", "evil.example:10105", false},
		{"http://10.0.0.8:10105", "10.0.0.7:10105", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("POST", "http://"+tc.host+"/v1/subscriptions", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		assert.Equal(t, tc.ok, o.Allowed(r), "origin %q host %q", tc.origin, tc.host)
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Origin", "https://evil.example")
	assert.True(t, NewOrigins([]string{"*"}).Allowed(r))
	assert.False(t, Origins{}.Allowed(r))
}

func TestCheckOrigins(t *testing.T) {
	assert.NoError(t, CheckOrigins([]string{"*", "https://app.example:8443", "http://x/"}))
	for _, bad := range []string{"", "app.example", "https://app.example/path", "https://u@app.example"} {
		assert.Error(t, CheckOrigins([]string{bad}), bad)
	}
}
