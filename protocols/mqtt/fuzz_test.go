package mqtt

import (
	"bytes"
	"testing"

	"github.com/meshd/meshd/bridge"
)

// FuzzDecode: any MQTT payload on any topic becomes a valid event; a
// wrapped payload keeps its bytes; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add("sensors/a/temperature", []byte("21.5"))
	f.Add("s", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`))
	f.Add("a b/ü/#", []byte{0xff, 0, 1})
	f.Add("", []byte(`{"specversion":"0.3","id":"","source":"/s","type":"t"}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		e := Decode("127.0.0.1:1883", topic, payload, Inbound{})
		if err := bridge.Validate(e); err != nil {
			t.Fatalf("invalid event from topic %q payload %q: %v", topic, payload, err)
		}
		if e.Type() == DefaultWrappedType && e.Subject() == topic && !bytes.Equal(e.Data(), payload) && len(payload) > 0 {
			t.Fatalf("wrapped data changed: %q -> %q", payload, e.Data())
		}
	})
}

// FuzzTemplate: parsing and rendering MQTT topic templates never panics,
// and a rendered topic never holds a wildcard.
func FuzzTemplate(f *testing.F) {
	f.Add("devices/{subject}/cmd", "d1")
	f.Add("{a}{b}", "x")
	f.Add("a/{", "")
	f.Fuzz(func(t *testing.T, tmpl, subject string) {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		e := Decode("h", "t", nil, Inbound{})
		if subject != "" {
			e.SetSubject(subject)
		}
		out, err := tp.render(e)
		if err == nil && bytes.ContainsAny([]byte(out), "+#\x00") {
			t.Fatalf("rendered topic %q has a wildcard", out)
		}
	})
}
