package console

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestServesTheFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ path, contentType, contains string }{
		{"/console/", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/console/index.html", "text/html; charset=utf-8", "<title>pgcast console</title>"},
		{"/console/app.js", "text/javascript; charset=utf-8", `from "./lib/index.js"`},
		{"/console/lib/index.js", "text/javascript; charset=utf-8", "export { PgcastClient, createClient }"},
		{"/console/console.css", "text/css; charset=utf-8", ".grid"},
	} {
		rec := get(t, http.MethodGet, tc.path)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d %s", tc.path, rec.Code, rec.Body)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.contentType)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Cache-Control"} {
			if rec.Header().Get(h) == "" {
				t.Errorf("GET %s: no %s", tc.path, h)
			}
		}
	}
	head := get(t, http.MethodHead, "/console/app.js")
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %q", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
}

func TestRefusesWhatIsNotAFile(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/console/nope.js", "/console/lib", "/console/lib/", "/console/lib//index.js", "/console/./app.js", "/console/dev-token", "/elsewhere"} {
		rec := get(t, http.MethodGet, p)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `"code":"not_found"`) {
			t.Errorf("GET %s: %d %s, want 404 not_found", p, rec.Code, rec.Body)
		}
	}
	rec := get(t, http.MethodPost, "/console/")
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestLibIsTheClientSource: static/lib is a copy of clients/js/src (embed
// cannot reach it); the library has one source, and this fails until the
// copy is refreshed.
func TestLibIsTheClientSource(t *testing.T) {
	t.Parallel()
	src := filepath.Join("..", "..", "clients", "js", "src")
	want, err := filepath.Glob(filepath.Join(src, "*.js"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no client sources in %s: %v", src, err)
	}
	got, err := fs.Glob(static, "static/lib/*")
	if err != nil {
		t.Fatal(err)
	}
	var wantNames, gotNames []string
	for _, f := range want {
		wantNames = append(wantNames, filepath.Base(f))
	}
	for _, f := range got {
		gotNames = append(gotNames, path.Base(f))
	}
	slices.Sort(wantNames)
	slices.Sort(gotNames)
	if !slices.Equal(wantNames, gotNames) {
		t.Fatalf("static/lib has %v, clients/js/src has %v: run `go generate ./server/console`", gotNames, wantNames)
	}
	for _, name := range wantNames {
		a, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := fs.ReadFile(static, "static/lib/"+name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("static/lib/%s differs from clients/js/src/%s: run `go generate ./server/console`", name, name)
		}
	}
}

// TestImportsResolve: every relative import of every module names an
// embedded file, so a renamed file cannot break the page unnoticed.
func TestImportsResolve(t *testing.T) {
	t.Parallel()
	imports := regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^"']*?from\s*["'](\.[^"']+)["']`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		body, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		for _, m := range imports.FindAllStringSubmatch(string(body), -1) {
			target := path.Join(path.Dir(p), m[1])
			if _, err := fs.Stat(static, target); err != nil {
				t.Errorf("%s imports %s: no such embedded file", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
