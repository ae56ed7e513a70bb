package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// GitHub's delivery headers (any case: HTTP/2 and proxies lower-case them,
// net/http canonicalises them).
const (
	HeaderEvent      = "X-GitHub-Event"
	HeaderDelivery   = "X-GitHub-Delivery"
	HeaderSignature  = "X-Hub-Signature-256"
	HeaderHookID     = "X-GitHub-Hook-ID"
	HeaderTargetType = "X-GitHub-Hook-Installation-Target-Type"
	HeaderTargetID   = "X-GitHub-Hook-Installation-Target-ID"
)

// Extensions of the events (CloudEvents extension names: lower-case
// letters and digits).
const (
	ExtHookID     = "githubhookid"
	ExtTargetType = "githubtargettype"
	ExtTargetID   = "githubtargetid"
)

// TypePrefix starts every event type: com.github.<event>[.<action>].
const TypePrefix = "com.github."

var (
	eventNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	actionRe    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// subjects names, per event, where its natural key is (the first present
// wins).
var subjects = map[string][][]string{
	"push":                        {{"ref"}},
	"create":                      {{"ref"}},
	"delete":                      {{"ref"}},
	"pull_request":                {{"pull_request", "number"}, {"number"}},
	"pull_request_review":         {{"pull_request", "number"}},
	"pull_request_review_comment": {{"pull_request", "number"}},
	"pull_request_review_thread":  {{"pull_request", "number"}},
	"issues":                      {{"issue", "number"}},
	"issue_comment":               {{"issue", "number"}},
	"discussion":                  {{"discussion", "number"}},
	"discussion_comment":          {{"discussion", "number"}},
	"release":                     {{"release", "tag_name"}},
	"workflow_run":                {{"workflow_run", "id"}},
	"workflow_job":                {{"workflow_job", "id"}},
	"check_run":                   {{"check_run", "id"}},
	"check_suite":                 {{"check_suite", "id"}},
	"deployment":                  {{"deployment", "id"}},
	"deployment_status":           {{"deployment", "id"}},
	"milestone":                   {{"milestone", "number"}},
	"label":                       {{"label", "name"}},
	"status":                      {{"sha"}},
	"commit_comment":              {{"comment", "commit_id"}},
	"member":                      {{"member", "login"}},
	"membership":                  {{"member", "login"}},
	"organization":                {{"membership", "user", "login"}, {"invitation", "login"}, {"organization", "login"}},
	"team":                        {{"team", "slug"}},
	"package":                     {{"package", "name"}},
	"ping":                        {{"hook_id"}},
	"installation":                {{"installation", "id"}},
	"installation_repositories":   {{"installation", "id"}},
}

// times names, per event, where the time of the occurrence is (RFC 3339
// or Unix seconds; the first present wins). Events not listed have no
// time.
var times = map[string][][]string{
	"push":                        {{"head_commit", "timestamp"}, {"repository", "pushed_at"}},
	"pull_request":                {{"pull_request", "updated_at"}},
	"pull_request_review":         {{"review", "submitted_at"}},
	"pull_request_review_comment": {{"comment", "updated_at"}},
	"issues":                      {{"issue", "updated_at"}},
	"issue_comment":               {{"comment", "updated_at"}},
	"discussion":                  {{"discussion", "updated_at"}},
	"discussion_comment":          {{"comment", "updated_at"}},
	"commit_comment":              {{"comment", "updated_at"}},
	"release":                     {{"release", "published_at"}, {"release", "created_at"}},
	"workflow_run":                {{"workflow_run", "updated_at"}},
	"workflow_job":                {{"workflow_job", "completed_at"}, {"workflow_job", "started_at"}},
	"check_run":                   {{"check_run", "completed_at"}, {"check_run", "started_at"}},
	"check_suite":                 {{"check_suite", "updated_at"}},
	"deployment":                  {{"deployment", "updated_at"}},
	"deployment_status":           {{"deployment_status", "updated_at"}},
	"installation":                {{"installation", "updated_at"}},
	"star":                        {{"starred_at"}},
}

// badDelivery is a delivery that cannot become an event (400).
type badDelivery struct{ reason string }

func (e badDelivery) Error() string { return e.reason }

func bad(format string, args ...any) error { return badDelivery{fmt.Sprintf(format, args...)} }

// payloadOf returns the JSON payload of a delivery: the body of an
// application/json one, the payload field of a form-encoded one. The
// signature covers the raw body either way.
func payloadOf(contentType string, body []byte) ([]byte, error) {
	mt := strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	switch mt {
	case "application/json":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, bad("the form-encoded body is malformed")
		}
		p := form.Get("payload")
		if p == "" {
			return nil, bad("the form-encoded body has no payload field")
		}
		return []byte(p), nil
	}
	return nil, errUnsupportedType
}

var errUnsupportedType = errors.New("want Content-Type application/json or application/x-www-form-urlencoded, as GitHub sends")

// payload is a delivery's JSON object, decoded a level at a time as
// lookups need it (each object at most once).
type payload struct {
	root   map[string]json.RawMessage
	nested map[string]map[string]json.RawMessage // by path, "\x00"-joined
}

func parsePayload(b []byte) (*payload, error) {
	p := &payload{nested: map[string]map[string]json.RawMessage{}}
	if err := json.Unmarshal(b, &p.root); err != nil || p.root == nil {
		return nil, bad("the payload is not a JSON object")
	}
	return p, nil
}

// lookup returns the raw value at path, nil if absent or null.
func (p *payload) lookup(path ...string) json.RawMessage {
	cur := p.root
	for i, k := range path {
		v, ok := cur[k]
		if !ok || len(v) == 0 || v[0] == 'n' {
			return nil
		}
		if i == len(path)-1 {
			return v
		}
		if v[0] != '{' {
			return nil
		}
		key := strings.Join(path[:i+1], "\x00")
		next, ok := p.nested[key]
		if !ok {
			if json.Unmarshal(v, &next) != nil {
				next = nil
			}
			p.nested[key] = next
		}
		cur = next
	}
	return nil
}

// text returns a string or integer member as text ("" otherwise).
func (p *payload) text(path ...string) string {
	v := p.lookup(path...)
	if len(v) == 0 {
		return ""
	}
	switch c := v[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	case c == '-' || c >= '0' && c <= '9':
		if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return string(v)
		}
	}
	return ""
}

// when returns an RFC 3339 or Unix-seconds member as a time.
func (p *payload) when(path ...string) (time.Time, bool) {
	s := p.text(path...)
	if s == "" {
		return time.Time{}, false
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0).UTC(), true
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// newEvent maps a verified delivery to its CloudEvent.
func newEvent(h http.Header, body []byte, fallbackSource string) (*event.Event, error) {
	name := h.Get(HeaderEvent)
	if !eventNameRe.MatchString(name) {
		return nil, bad("missing or malformed %s header", HeaderEvent)
	}
	id := h.Get(HeaderDelivery)
	if id == "" || len(id) > 200 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, bad("missing or malformed %s header", HeaderDelivery)
	}
	p, err := parsePayload(body)
	if err != nil {
		return nil, err
	}

	typ := TypePrefix + name
	if action := p.text("action"); actionRe.MatchString(action) {
		typ += "." + action
	}
	src := sourceOf(p, fallbackSource)
	if types.ParseURIRef(src) == nil {
		src = fallbackSource
	}
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(src)
	for _, path := range subjects[name] {
		if s := p.text(path...); s != "" {
			e.SetSubject(s)
			break
		}
	}
	for _, path := range times[name] {
		if t, ok := p.when(path...); ok {
			e.SetTime(t)
			break
		}
	}
	for ext, header := range map[string]string{ExtHookID: HeaderHookID, ExtTargetType: HeaderTargetType, ExtTargetID: HeaderTargetID} {
		if v := h.Get(header); v != "" && len(v) <= 200 {
			e.SetExtension(ext, v)
		}
	}
	e.SetDataContentType("application/json")
	e.DataEncoded = body
	return &e, nil
}

// sourceOf is the page of what the delivery is about: the repository, else
// the organization, enterprise or installation account, else the site of
// the sender.
func sourceOf(p *payload, fallback string) string {
	for _, path := range [][]string{{"repository", "html_url"}, {"organization", "html_url"}} {
		if s := p.text(path...); s != "" {
			return s
		}
	}
	if login := p.text("organization", "login"); login != "" {
		// Webhook payloads carry the organization's API URL only:
		// https://api.github.com/orgs/X, or https://HOST/api/v3/orgs/X on
		// GitHub Enterprise Server. Its page is https://github.com/X,
		// https://HOST/X.
		if site := siteOf(p.text("organization", "url")); site != "" {
			return site + "/" + url.PathEscape(login)
		}
	}
	for _, path := range [][]string{{"enterprise", "html_url"}, {"installation", "account", "html_url"}} {
		if s := p.text(path...); s != "" {
			return s
		}
	}
	if u, err := url.Parse(p.text("sender", "html_url")); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return fallback
}

// siteOf returns the web site of a GitHub API URL.
func siteOf(apiURL string) string {
	u, err := url.Parse(apiURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	if host, ok := strings.CutPrefix(u.Host, "api."); ok {
		return u.Scheme + "://" + host
	}
	if i := strings.Index(u.Path, "/api/v3/"); i >= 0 {
		return u.Scheme + "://" + u.Host + u.Path[:i]
	}
	return ""
}
