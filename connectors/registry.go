package connectors

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Registry holds connector specs by name.
type Registry struct {
	mu      sync.RWMutex
	specs   map[string]Spec
	omitted map[string]string // connector types this build leaves out → why
}

// NewRegistry returns an empty registry (tests build their own).
func NewRegistry() *Registry {
	return &Registry{specs: map[string]Spec{}, omitted: map[string]string{}}
}

// Omit records connector types that exist but this build leaves out, and
// why: a config of one is refused saying so, not as an unknown type.
func (r *Registry) Omit(why string, names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		r.omitted[n] = why
	}
}

// Register adds s. It panics on a malformed spec or a name registered
// before: both are programming errors found at start.
func (r *Registry) Register(s Spec) {
	if err := s.check(); err != nil {
		panic("connectors: " + err.Error())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.specs[s.Name]; ok {
		panic(fmt.Sprintf("connectors: connector type %q registered twice", s.Name))
	}
	r.specs[s.Name] = s
}

// Lookup returns the spec named name.
func (r *Registry) Lookup(name string) (Spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.specs[name]
	return s, ok
}

// Specs returns every spec, ordered by name.
func (r *Registry) Specs() []Spec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Spec, 0, len(r.specs))
	for _, k := range slices.Sorted(maps.Keys(r.specs)) {
		out = append(out, r.specs[k])
	}
	return out
}

// Validate looks up raw's connector.type and validates raw against it.
func (r *Registry) Validate(raw map[string]any) (Spec, Config, error) {
	typ, _ := raw[FieldConnectorType].(string)
	if typ == "" {
		return Spec{}, nil, &ValidationError{Fields: []FieldError{{FieldConnectorType, "required"}}}
	}
	s, ok := r.Lookup(typ)
	if !ok {
		reason := fmt.Sprintf("%q: %v", typ, ErrUnknownType)
		r.mu.RLock()
		if why, omitted := r.omitted[typ]; omitted {
			reason = fmt.Sprintf("%q: not in this build of meshd: %s", typ, why)
		}
		r.mu.RUnlock()
		return Spec{}, nil, &ValidationError{Fields: []FieldError{{FieldConnectorType, reason}}}
	}
	cfg, err := s.Validate(raw)
	return s, cfg, err
}

// defaultRegistry is filled by the init functions of the connector
// packages: the one package-level mutable state meshd allows.
var defaultRegistry = NewRegistry()

// Register adds s to the default registry; call it from init.
func Register(s Spec) { defaultRegistry.Register(s) }

// Default is the registry the init functions of connector packages fill
// (import connectors/standard for the set meshd ships).
func Default() *Registry { return defaultRegistry }

// Omit records in the default registry connector types this build leaves
// out; call it from init.
func Omit(why string, names ...string) { defaultRegistry.Omit(why, names...) }
