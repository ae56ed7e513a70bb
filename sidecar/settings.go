package sidecar

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// setting is one scalar leaf of Config, addressable by its YAML path.
type setting struct {
	path   string // "api.maxBodyBytes"
	usage  string
	secret bool
	field  reflect.Value
}

// EnvName is the environment variable of a setting: MESHD_API_MAX_BODY_BYTES
// for api.maxBodyBytes, MESHD_MESH_LISTEN_TLS_CLIENT_CA_FILE for
// mesh.listenTLS.clientCAFile (a run of capitals is one word).
func (s setting) EnvName() string {
	var b strings.Builder
	b.WriteString("MESHD_")
	path := []rune(s.path)
	for i, r := range path {
		switch {
		case r == '.':
			b.WriteByte('_')
		case unicode.IsUpper(r) && i > 0 && path[i-1] != '.' &&
			(!unicode.IsUpper(path[i-1]) || i+1 < len(path) && unicode.IsLower(path[i+1])):
			b.WriteByte('_')
			b.WriteRune(r)
		default:
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// EnvName is the environment variable of the setting at path, the YAML path
// of a scalar leaf of Config: EnvName("app.id") is MESHD_APP_ID. It panics
// when path is not a setting, so that code outside this package (the
// Kubernetes injector) takes the names from here instead of spelling them.
func EnvName(path string) string {
	var c Config
	for _, s := range settings(&c) {
		if s.path == path {
			return s.EnvName()
		}
	}
	panic(fmt.Sprintf("sidecar: %q is not a setting", path))
}

// settings lists the scalar leaves of c, pointing into c.
func settings(c *Config) []setting {
	var out []setting
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			fv := v.Field(i)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(path, fv)
			case f.Tag.Get("usage") != "":
				out = append(out, setting{path: path, usage: f.Tag.Get("usage"), secret: f.Tag.Get("secret") == "true", field: fv})
			}
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return out
}

func (s setting) set(text string) error {
	switch s.field.Interface().(type) {
	case string:
		s.field.SetString(text)
	case bool:
		v, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("%s: %q is not a boolean", s.path, text)
		}
		s.field.SetBool(v)
	case int, int64:
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", s.path, text)
		}
		s.field.SetInt(v)
	case time.Duration:
		v, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration like 10s or 5m", s.path, text)
		}
		s.field.SetInt(int64(v))
	default:
		return fmt.Errorf("%s: unsupported setting type %s", s.path, s.field.Type())
	}
	return nil
}

func (s setting) String() string {
	if s.secret && !s.field.IsZero() {
		return "<redacted>"
	}
	return fmt.Sprint(s.field.Interface())
}

// ApplyEnv sets every leaf that has its MESHD_* variable in env.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	for _, s := range settings(c) {
		if v, ok := lookup(s.EnvName()); ok {
			if err := s.set(v); err != nil {
				return fmt.Errorf("%s: %w", s.EnvName(), err)
			}
		}
	}
	return nil
}

// flagValue adapts a setting to flag.Value, recording which flags were given
// so they can be applied after the file and the environment.
type flagValue struct {
	s     setting
	given *[]func() error
}

func (f flagValue) String() string { return "" }
func (f flagValue) Set(text string) error {
	scratch := setting{path: f.s.path, field: reflect.New(f.s.field.Type()).Elem()}
	if err := scratch.set(text); err != nil {
		return err
	}
	*f.given = append(*f.given, func() error { return f.s.set(text) })
	return nil
}
func (f flagValue) IsBoolFlag() bool { return f.s.field.Kind() == reflect.Bool }

// RegisterFlags adds a flag per setting (--api.listen ...) to fs. The
// returned function applies the flags that were given; call it after the
// file and environment were applied.
func (c *Config) RegisterFlags(fs *flag.FlagSet) (apply func() error) {
	var given []func() error
	defaults := Defaults()
	def := map[string]setting{}
	for _, s := range settings(&defaults) {
		def[s.path] = s
	}
	for _, s := range settings(c) {
		usage := fmt.Sprintf("%s (env %s", s.usage, s.EnvName())
		if d := def[s.path]; !d.field.IsZero() {
			usage += ", default " + d.String()
		}
		fs.Var(flagValue{s: s, given: &given}, s.path, usage+")")
	}
	return func() error {
		for _, apply := range given {
			if err := apply(); err != nil {
				return err
			}
		}
		return nil
	}
}

// LoadConfig builds the config from defaults, the YAML file (if path is
// set), the environment, then the flags already parsed into apply.
func LoadConfig(path string, c *Config, applyFlags func() error) error {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		if err := c.DecodeYAML(data); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.ApplyEnv(os.LookupEnv); err != nil {
		return err
	}
	if applyFlags != nil {
		if err := applyFlags(); err != nil {
			return err
		}
	}
	return c.Validate()
}

// otherEnv are the MESHD_* variables meshd knows besides its settings':
// MESHD_CONFIG (meshd run's --config), those the client commands read
// (publish, subscribe, connectors), and those the Kubernetes injector
// sets in the app's containers for the app (deploy/injector EnvHTTPPort
// and EnvAdminPort; a test there keeps this list in step).
func otherEnv() []string {
	return []string{"MESHD_CONFIG", "MESHD_URL", "MESHD_ADMIN_URL", "MESHD_HTTP_PORT", "MESHD_ADMIN_PORT"}
}

// envWarning is a MESHD_* variable that names nothing meshd reads.
type envWarning struct {
	name    string // MESHD_API_LISTN
	suggest string // MESHD_API_LISTEN, or "" when nothing is close
}

// unknownEnv lists the MESHD_* variables of environ ("NAME=value") that
// meshd does not read: most likely misspelled settings, which would
// otherwise be ignored without a word.
func unknownEnv(environ []string) []envWarning {
	const prefix = "MESHD_"
	var c Config
	var known []string // without the prefix
	for _, name := range otherEnv() {
		known = append(known, strings.TrimPrefix(name, prefix))
	}
	for _, s := range settings(&c) {
		known = append(known, strings.TrimPrefix(s.EnvName(), prefix))
	}
	var out []envWarning
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || slices.Contains(known, rest) {
			continue
		}
		w := envWarning{name: name}
		if best := closest(rest, known); best != "" {
			w.suggest = prefix + best
		}
		out = append(out, w)
	}
	return out
}
