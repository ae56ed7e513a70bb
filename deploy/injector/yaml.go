package injector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	yaml "go.yaml.in/yaml/v2"
)

// YAML goes through JSON both ways, as kubectl's YAML (sigs.k8s.io/yaml,
// with the same YAML library underneath) does, so meshd inject writes what
// it wrote when it used that package: sorted keys, kubectl's layout.

// yamlToJSON converts one YAML document to JSON.
func yamlToJSON(doc []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable turns the maps the YAML library decodes (keys of any type) into
// JSON objects, writing keys as YAML would read them back.
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			var key string
			switch k := k.(type) {
			case string:
				key = k
			case int:
				key = strconv.Itoa(k)
			case int64:
				key = strconv.FormatInt(k, 10)
			case float64:
				key = strconv.FormatFloat(k, 'g', -1, 32)
				switch key {
				case "+Inf":
					key = ".inf"
				case "-Inf":
					key = "-.inf"
				case "NaN":
					key = ".nan"
				}
			case bool:
				key = strconv.FormatBool(k)
			default:
				return nil, fmt.Errorf("unsupported map key of type %T: %v", k, k)
			}
			var err error
			if m[key], err = jsonable(x); err != nil {
				return nil, err
			}
		}
		return m, nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			var err error
			if out[i], err = jsonable(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// jsonToYAML converts JSON to a YAML document.
func jsonToYAML(j []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

// decodeJSON decodes one JSON value, keeping numbers as written
// (json.Number), and refuses trailing data.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}
