package mesh_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshd/meshd/mesh"
)

func TestNames(t *testing.T) {
	for _, ok := range []string{"a", "a.b", "A-1_x.y2", strings.Repeat("a", 200)} {
		assert.True(t, mesh.IsName(ok, 200), ok)
		assert.NoError(t, mesh.ValidateTopic(ok), ok)
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "a b", "a/b", "a*", "a>", "ü", strings.Repeat("a", 201)} {
		assert.False(t, mesh.IsName(bad, 200), bad)
		assert.ErrorIs(t, mesh.ValidateTopic(bad), mesh.ErrInvalidTopic, bad)
	}
	assert.True(t, mesh.IsToken("a-b_C9", 10))
	for _, bad := range []string{"", "a.b", "a b", "toolongname"} {
		assert.False(t, mesh.IsToken(bad, 10), bad)
	}
}
