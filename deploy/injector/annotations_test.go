package injector

import (
	"math/rand/v2"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TestDNSNamesAsKubernetes compares the name checks with apimachinery's.
func TestDNSNamesAsKubernetes(t *testing.T) {
	names := []string{"", "a", "-", "a-", "-a", "a.b", "a..b", ".a", "a.", "A", "a_b", "web-meshd", "1", "0-0",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "ab"}
	r := rand.New(rand.NewPCG(5, 6))
	const alphabet = "ab09-._Z"
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		if got, want := isDNSLabel(n), len(validation.IsDNS1123Label(n)) == 0; got != want {
			t.Errorf("label %q: %v, apimachinery %v", n, got, want)
		}
		if got, want := isDNSSubdomain(n), len(validation.IsDNS1123Subdomain(n)) == 0; got != want {
			t.Errorf("subdomain %q: %v, apimachinery %v", n, got, want)
		}
	}
}
