package bridge

import (
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// Validate checks one event against the CloudEvents spec; errors are
// *InvalidEventError.
//
// It runs on every publish, so the common case (a valid event) allocates
// nothing: it reads the SDK's typed context directly instead of calling
// event.Validate, which builds a map per call.
func Validate(e *event.Event) error {
	if e == nil {
		return &InvalidEventError{Reason: "event is missing"}
	}
	if len(e.FieldErrors) > 0 {
		// Errors recorded by the SDK's setters (SetSpecVersion, SetTime, ...).
		return fieldError(e.FieldErrors)
	}
	var err error
	switch ec := e.Context.(type) {
	case *event.EventContextV1:
		err = validateV1(ec)
	case *event.EventContextV03:
		err = validateV03(ec)
	case nil:
		return invalid("specversion", "missing")
	default:
		sv := e.Context.GetSpecVersion()
		if sv == "" {
			return invalid("specversion", "missing")
		}
		return invalid("specversion", "unsupported version "+quote(sv)+", want \"1.0\" or \"0.3\"")
	}
	if err != nil {
		return err
	}
	return validateData(e)
}

// validateData checks that data said to be JSON is JSON: a subscriber in
// structured mode would otherwise receive an invalid document.
func validateData(e *event.Event) error {
	if len(e.DataEncoded) == 0 || e.DataBase64 {
		return nil
	}
	if ct := e.DataContentType(); ct != "" && IsJSONMediaType(ct) && (!jsonscan.Valid(e.DataEncoded) || !utf8.Valid(e.DataEncoded)) {
		return invalid("data", "is not valid JSON, while datacontenttype "+quote(ct)+" says it is; send JSON or another content type (text/plain, application/octet-stream)")
	}
	return nil
}

// IsJSONMediaType says whether ct (with or without parameters) is JSON:
// application/json, text/json or any +json type.
func IsJSONMediaType(ct string) bool {
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	return strings.EqualFold(mt, "application/json") || strings.EqualFold(mt, "text/json") ||
		len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json")
}

func invalid(attr, reason string) *InvalidEventError {
	return &InvalidEventError{Attribute: attr, Reason: reason}
}

// fieldError turns the first (by name, for a stable answer) SDK field error
// into ours.
func fieldError(errs map[string]error) error {
	first := ""
	for k := range errs {
		if first == "" || k < first {
			first = k
		}
	}
	attr := strings.TrimPrefix(first, "extension:")
	return invalid(attr, errs[first].Error())
}

func validateV1(ec *event.EventContextV1) error {
	if err := validateCommon(ec.ID, &ec.Source, ec.Type, ec.Subject, ec.DataContentType, ec.Time); err != nil {
		return err
	}
	if ec.DataSchema != nil && !ec.DataSchema.Validate() {
		return invalid("dataschema", "must be an absolute URI")
	}
	return validateExtensions(ec.Extensions)
}

func validateV03(ec *event.EventContextV03) error {
	if err := validateCommon(ec.ID, &ec.Source, ec.Type, ec.Subject, ec.DataContentType, ec.Time); err != nil {
		return err
	}
	if ec.SchemaURL != nil && isBlank(ec.SchemaURL.String()) {
		return invalid("schemaurl", "must be a URI")
	}
	if ec.DataContentEncoding != nil && !strings.EqualFold(strings.TrimSpace(*ec.DataContentEncoding), event.Base64) {
		return invalid("datacontentencoding", "must be \"base64\"")
	}
	return validateExtensions(ec.Extensions)
}

func validateCommon(id string, source *types.URIRef, typ string, subject, contentType *string, t *types.Timestamp) error {
	if isBlank(id) {
		return invalid("id", "missing")
	}
	if err := checkTrimmed("id", id); err != nil {
		return err
	}
	if err := validateSource(&source.URL); err != nil {
		return err
	}
	if isBlank(typ) {
		return invalid("type", "missing")
	}
	if err := checkTrimmed("type", typ); err != nil {
		return err
	}
	if subject != nil {
		if isBlank(*subject) {
			return invalid("subject", "must not be empty when present")
		}
		if err := checkTrimmed("subject", *subject); err != nil {
			return err
		}
	}
	if contentType != nil && (!validMediaType(*contentType) || hasEdgeSpace(*contentType)) {
		return invalid("datacontenttype", "not a media type (RFC 2046): "+quote(*contentType))
	}
	if t != nil {
		// RFC 3339 has four-digit years; the zero time is what a broken
		// parse leaves behind.
		if y := t.Time.Year(); t.Time.IsZero() || y < 0 || y > 9999 {
			return invalid("time", "not an RFC 3339 timestamp")
		}
	}
	return nil
}

// validateSource checks that source is a non-empty URI-reference. The SDK
// parses source with url.Parse, which lets spaces and control characters
// through in the path, query and fragment; RFC 3986 does not.
func validateSource(u *url.URL) error {
	if u.Scheme == "" && u.Opaque == "" && u.Host == "" && u.User == nil &&
		isBlank(u.Path) && u.RawQuery == "" && u.Fragment == "" {
		return invalid("source", "missing")
	}
	for _, s := range [...]string{u.Opaque, u.Path, u.RawQuery, u.Fragment} {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c == 0x7f {
				return invalid("source", "not a URI-reference: contains a space or control character")
			}
		}
	}
	return nil
}

// validMediaType accepts type "/" subtype tokens without parsing (no
// allocation) and falls back to mime.ParseMediaType for anything with
// parameters or unusual characters.
func validMediaType(s string) bool {
	slash := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			if slash >= 0 {
				return false
			}
			slash = i
		case isTokenChar(c):
		default:
			_, _, err := mime.ParseMediaType(s)
			return err == nil
		}
	}
	return slash > 0 && slash < len(s)-1
}

func isTokenChar(c byte) bool {
	// RFC 2045 token characters, the common subset.
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '+' || c == '_' || c == '!' || c == '#' ||
		c == '$' || c == '&' || c == '^' || c == '`' || c == '|' || c == '~' || c == '*' || c == '%' || c == '\''
}

// Extension names are lower-case ASCII letters and digits (CloudEvents 1.0).
// The spec recommends at most 20 characters; longer names are accepted.
func validateExtensions(ext map[string]any) error {
	for name, v := range ext {
		if err := ValidateExtensionName(name); err != nil {
			return err
		}
		switch v := v.(type) {
		case string:
			if err := checkString(name, v); err != nil {
				return err
			}
		case bool, int32, []byte, types.URI, types.URIRef, types.Timestamp:
			// Canonical CloudEvents types: the common case, no allocation.
		default:
			if _, err := types.Validate(v); err != nil {
				return invalid(name, "unsupported extension value type")
			}
		}
	}
	return nil
}

// ValidateExtensionName checks the CloudEvents naming rule of extension
// attributes (lower-case ASCII letters and digits, not a context attribute
// name); errors are *InvalidEventError naming the attribute.
func ValidateExtensionName(name string) error {
	if name == "" {
		return invalid("", "extension with an empty name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalid(name, "extension names are lower-case letters a-z and digits 0-9")
		}
	}
	if isSpecAttribute(name) {
		return invalid(name, "extension must not reuse a context attribute name")
	}
	return nil
}

func isSpecAttribute(name string) bool {
	switch name {
	case "id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time", "data":
		return true
	}
	return false
}

// checkString applies the CloudEvents String type: valid UTF-8 without
// control characters (U+0000–U+001F, U+007F–U+009F) or noncharacters. A
// line break could not travel in a header either. Printable ASCII, the
// common case, is checked without decoding.
func checkString(attr, s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c < 0x80 {
			return invalid(attr, fmt.Sprintf("contains the control character %U at byte %d; CloudEvents strings cannot", rune(c), i))
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return invalid(attr, fmt.Sprintf("is not valid UTF-8 at byte %d", i))
		case r >= 0x80 && r <= 0x9f:
			return invalid(attr, fmt.Sprintf("contains the control character %U at byte %d; CloudEvents strings cannot", r, i))
		case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
			return invalid(attr, fmt.Sprintf("contains the noncharacter %U at byte %d", r, i))
		}
		i += size
	}
	return nil
}

// checkTrimmed is checkString for the attributes CloudEvents SDKs trim
// when they read them (id, type, subject, datacontenttype): a value that
// starts or ends with whitespace would not reach a subscriber as it was
// sent — " order-42" arrives as "order-42", the id of another event — so
// it is refused. Extension values keep their spaces.
func checkTrimmed(attr, s string) error {
	if hasEdgeSpace(s) {
		return invalid(attr, "starts or ends with whitespace, which CloudEvents SDKs remove: "+quote(s))
	}
	return checkString(attr, s)
}

func hasEdgeSpace(s string) bool {
	return len(s) > 0 && (isSpace(s[0]) || isSpace(s[len(s)-1]))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
		default:
			return false
		}
	}
	return true
}

// quote is strconv.Quote with a length limit, so errors do not echo
// kilobytes of input.
func quote(s string) string {
	const max = 100
	if len(s) > max {
		return strconv.Quote(strings.ToValidUTF8(s[:max], "")) + "..."
	}
	return strconv.Quote(s)
}
