package apitoken

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestChecker(t *testing.T) {
	c := New("s3cret")
	assert.True(t, c.Required())
	assert.True(t, c.Match("s3cret"))
	assert.False(t, c.Match("s3cre"))
	assert.False(t, c.Match(""))
	assert.False(t, New("").Required())
	assert.False(t, New("").Match(""), "no token configured matches nothing; callers check Required first")
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	assert.Equal(t, "", FromRequest(r))
	r.Header.Set("Authorization", "bearer  abc ")
	assert.Equal(t, "abc", FromRequest(r))
	r.Header.Set("Authorization", "Basic abc")
	assert.Equal(t, "", FromRequest(r))
	r.Header.Set("Meshd-Api-Token", "xyz")
	assert.Equal(t, "xyz", FromRequest(r), "the meshd header wins")
}

func TestBearer(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Meshd-Api-Token", "xyz")
	assert.Equal(t, "", Bearer(r), "the admin API takes Bearer only")
	r.Header.Set("Authorization", "Bearer abc")
	assert.Equal(t, "abc", Bearer(r))
}
