package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// securityHeaders keep the page to its own origin: its scripts, styles and
// connections (fetch and WebSocket; 'self' covers ws: and wss: to the same
// host) come from pgcast itself, and no other site may frame it, since a
// token is pasted into it.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	"X-Frame-Options":        "DENY",
	// The files change with the binary; they are small, so revalidating
	// costs little and a new pgcast never runs an old console.
	"Cache-Control": "no-cache",
}

// Handler serves the console's files for requests under Prefix
// ("/console/" is index.html). Register it for "GET /console/" (HEAD is
// included); it answers other methods with 405, and paths that are not
// one of its files with 404, in pgcast's JSON error shape. It never lists
// directories.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern above makes "static" exist
	}
	return &handler{files: sub}
}

type handler struct {
	files fs.FS
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	if name == "" {
		name = "index.html"
	}
	// Only clean, relative file names: fs.ValidPath refuses "..", empty
	// and absolute elements; a directory is not a file.
	if !fs.ValidPath(name) || path.Clean(name) != name {
		writeError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	data, err := fs.ReadFile(h.files, name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if ct, ok := contentTypes[path.Ext(name)]; ok {
		w.Header().Set("Content-Type", ct)
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// contentTypes are set explicitly: a module script must be served as
// JavaScript, and mime.TypeByExtension reads the system's tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".ts":   "text/plain; charset=utf-8",
	".svg":  "image/svg+xml",
}

// writeError answers in the shape of pgcast's other errors.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": message}})
}
