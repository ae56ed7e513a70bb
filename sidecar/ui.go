package sidecar

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The dashboard: plain HTML, CSS and JavaScript embedded in the binary,
// served at /ui/ on the admin port. It holds no data: its script calls the
// admin API (GET /v1/overview every second, and the actions' endpoints)
// with the admin token the operator types in once, kept in the tab's
// sessionStorage. Everything it shows is set as text, never as HTML.

//go:embed ui
var uiFiles embed.FS

// uiCSP allows the page its own script, style and API, and nothing else:
// no inline script or style, no other origin, no framing.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// IsUIAsset says whether path is one of the dashboard's static files,
// which hold no data and are served without the admin token (a browser
// cannot send it when it opens the page; the page's API calls carry it).
func IsUIAsset(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, "/ui/") && !strings.Contains(path, "..")
}

func (s *Sidecar) mountUI(mux *http.ServeMux) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	mux.Handle("GET /ui/", uiHeaders(files))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
