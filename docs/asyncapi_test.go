package docs

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/pgcast/pgcast/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The documents are checked against what the code defines, read from the
// Go sources of ../server and ../stream (their constants are unexported):
// a message type, error code, close code or event name added to the code
// without being documented fails here. Each scan also has a floor of values
// it must find, so that a scanner broken by a refactor fails loudly instead
// of checking nothing.

func TestAsyncAPIIsVersion3(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	v, _ := doc["asyncapi"].(string)
	if !strings.HasPrefix(v, "3.") {
		t.Fatalf("asyncapi: %q, want 3.x", v)
	}
	for _, key := range []string{"info", "channels", "operations", "components"} {
		if _, ok := doc[key].(map[string]any); !ok {
			t.Errorf("%s: missing or not a mapping", key)
		}
	}
}

func TestAsyncAPIRefsResolve(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	n := 0
	walk(doc, "#", func(path string, m map[string]any) {
		ref, ok := m["$ref"]
		if !ok {
			return
		}
		n++
		s, _ := ref.(string)
		if _, err := resolve(doc, s); err != nil {
			t.Errorf("%s: $ref %q: %v", path, ref, err)
		}
	})
	if n < 20 {
		t.Fatalf("found %d $refs: the walk is broken", n)
	}
}

// Every operation's messages belong to its channel (AsyncAPI 3 requires
// it; the official parser checks it too, in make lint-docs).
func TestAsyncAPIOperationsUseTheirChannelsMessages(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	for name, op := range mapping(t, doc, "#/operations") {
		op := op.(map[string]any)
		check := func(where string, o map[string]any) {
			ch, _ := o["channel"].(map[string]any)
			chRef, _ := ch["$ref"].(string)
			msgs, _ := o["messages"].([]any)
			if chRef == "" || len(msgs) == 0 {
				t.Errorf("operation %s%s: want a channel $ref and messages", name, where)
				return
			}
			for _, m := range msgs {
				ref, _ := m.(map[string]any)["$ref"].(string)
				if !strings.HasPrefix(ref, chRef+"/messages/") {
					t.Errorf("operation %s%s: message %q is not one of %s's", name, where, ref, chRef)
				}
			}
		}
		check("", op)
		if reply, ok := op["reply"].(map[string]any); ok {
			check(".reply", reply)
		}
	}
}

// Each server message type of /api/realtime has a message whose payload's
// type is that constant, and no documented type is unknown to the code.
func TestAsyncAPIDescribesEveryRealtimeServerMessage(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	code := realtimeServerTypes(t)
	documented := realtimeMessageConsts(t, doc, "type")
	assertSameSet(t, "realtime server message types", code, documented)
}

func TestAsyncAPIDescribesEveryRealtimeClientAction(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	src := serverSources(t)
	code := map[string]bool{}
	for _, f := range src {
		ast.Inspect(f.file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if strings.HasPrefix(name.Name, "action") && i < len(vs.Values) {
					if s, ok := stringLit(vs.Values[i]); ok {
						code[s] = true
					}
				}
			}
			return true
		})
	}
	requireFloor(t, "client actions", code, "subscribe", "unsubscribe", "ping")
	assertSameSet(t, "realtime client actions", code, realtimeMessageConsts(t, doc, "action"))
}

func TestAsyncAPIDescribesEveryRealtimeErrorCode(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	code := map[string]bool{}
	for _, f := range serverSources(t) {
		ast.Inspect(f.file, func(n ast.Node) bool {
			// clientError, and channelError: the errors about a channel,
			// which may list the channels that exist.
			for _, typ := range []string{"clientError", "channelError"} {
				if s, ok := compositeField(n, typ, "code"); ok {
					code[s] = true
				}
			}
			return true
		})
	}
	requireFloor(t, "realtime error codes", code, "invalid_json", "invalid_action", "invalid_channel",
		"invalid_since", "subscription_limit", "unknown_namespace", "internal_error", "rate_limited")
	enum := map[string]bool{}
	for _, v := range sequence(t, doc, "#/components/messages/error/payload/properties/code/enum") {
		enum[v.(string)] = true
	}
	assertSameSet(t, "realtime error codes", code, enum)
	md := readDoc(t, "realtime.md")
	for c := range code {
		if !strings.Contains(md, "`"+c+"`") {
			t.Errorf("realtime.md does not describe error code `%s`", c)
		}
	}
}

// Every close code the server can send is described on every WebSocket
// channel it applies to (those used only by package realtime on /api/realtime
// alone), and in the contracts.
func TestAsyncAPIDescribesEveryCloseCode(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	codes := closeCodes(t)
	requireFloor(t, "close codes", keys(codes), "1001", "1008", "1009", "4001", "4008")
	channels := mapping(t, doc, "#/channels")
	for c, realtimeOnly := range codes {
		word := regexp.MustCompile(`\b` + strconv.Itoa(c) + `\b`)
		for name, ch := range channels {
			if realtimeOnly && name != "realtime" {
				continue
			}
			desc, _ := ch.(map[string]any)["description"].(string)
			if !word.MatchString(desc) {
				t.Errorf("channel %s: description does not describe close code %d", name, c)
			}
		}
		for _, md := range []string{"catalyst.md", "realtime.md"} {
			if realtimeOnly && md == "catalyst.md" {
				continue
			}
			if !strings.Contains(readDoc(t, md), "`"+strconv.Itoa(c)+"`") {
				t.Errorf("%s does not describe close code `%d`", md, c)
			}
		}
	}
}

// The Catalyst item schemas list exactly the event names stream defines
// for each endpoint, and catalyst.md describes each.
func TestAsyncAPIDescribesEveryCatalystEvent(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	records, tasks := map[string]bool{}, map[string]bool{}
	for k := stream.Kind(0); k < 255; k++ {
		switch {
		case k.IsRecord():
			records[k.String()] = true
		case k.IsTask():
			tasks[k.String()] = true
		}
	}
	requireFloor(t, "record events", records, "object_record_created", "object_records_count_changed")
	requireFloor(t, "task events", tasks, "task_created", "task_deleted")
	assertSameSet(t, "object-record events", records, itemEvents(t, doc, "ObjectRecordItem"))
	assertSameSet(t, "task events", tasks, itemEvents(t, doc, "TaskItem"))
	md := readDoc(t, "catalyst.md")
	for e := range records {
		if !strings.Contains(md, "`"+e+"`") {
			t.Errorf("catalyst.md does not describe event `%s`", e)
		}
	}
	for e := range tasks {
		if !strings.Contains(md, "`"+e+"`") {
			t.Errorf("catalyst.md does not describe event `%s`", e)
		}
	}
}

// Every error code an HTTP answer of the server can carry (handshakes,
// tickets, REST) is in one of the contracts.
func TestContractsDescribeEveryHTTPErrorCode(t *testing.T) {
	t.Parallel()
	code := map[string]bool{}
	for _, f := range serverSources(t) {
		ast.Inspect(f.file, func(n ast.Node) bool {
			if s, ok := compositeField(n, "APIError", "Code"); ok { // httpjson.APIError
				code[s] = true
			}
			if call, ok := n.(*ast.CallExpr); ok && isFunc(call.Fun, "httpjson", "Error") && len(call.Args) >= 3 {
				if s, ok := stringLit(call.Args[2]); ok {
					code[s] = true
				}
			}
			if call, ok := n.(*ast.CallExpr); ok && isFunc(call.Fun, "rest", "NewError") && len(call.Args) >= 2 {
				if s, ok := stringLit(call.Args[1]); ok {
					code[s] = true
				}
			}
			return true
		})
	}
	requireFloor(t, "HTTP error codes", code, "invalid_filter", "invalid_ticket", "unauthorized",
		"too_many_connections", "validation_error", "not_found", "internal")
	docs := readDoc(t, "catalyst.md") + readDoc(t, "realtime.md")
	for c := range code {
		if !strings.Contains(docs, "`"+c+"`") {
			t.Errorf("neither catalyst.md nor realtime.md describes HTTP error code `%s`", c)
		}
	}
}

// The limits the AsyncAPI document states are the server's.
func TestAsyncAPILimitsAreTheServers(t *testing.T) {
	t.Parallel()
	doc := asyncAPI(t)
	consts := intConsts(t, serverSources(t))
	if got, want := scalar(t, doc, "#/components/schemas/Channel/maxLength"), consts["maxChannelLen"]; got != want {
		t.Errorf("Channel maxLength %d, server's maxChannelLen %d", got, want)
	}
	info, _ := resolve(doc, "#/info/description")
	if want := strconv.Itoa(consts["clientFrameLimit"]); !strings.Contains(info.(string), want+" bytes") {
		t.Errorf("info.description does not state the client frame limit, %s bytes", want)
	}
	if want := fmt.Sprintf("Maximum %d subscriptions", consts["maxRealtimeChannels"]); !strings.Contains(readDoc(t, "realtime.md"), want) {
		t.Errorf("realtime.md does not say %q", want)
	}
}

// --- the document ---

func asyncAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(AsyncAPI, &doc); err != nil {
		t.Fatalf("parse asyncapi.yaml: %v", err)
	}
	return doc
}

// resolve follows a local JSON pointer ("#/a/b~1c") in doc.
func resolve(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var cur any = doc
	if rest == "" {
		return cur, nil
	}
	if !strings.HasPrefix(rest, "/") {
		return nil, fmt.Errorf("malformed pointer")
	}
	for _, tok := range strings.Split(rest[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no %q", tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("no index %q", tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%q: not a container", tok)
		}
	}
	return cur, nil
}

// deref resolves v while it is a {"$ref": …} mapping.
func deref(t *testing.T, doc map[string]any, v any) any {
	t.Helper()
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return v
		}
		var err error
		if v, err = resolve(doc, ref); err != nil {
			t.Fatalf("$ref %q: %v", ref, err)
		}
	}
	t.Fatalf("$ref chain too long")
	return nil
}

func walk(v any, path string, fn func(string, map[string]any)) {
	switch c := v.(type) {
	case map[string]any:
		fn(path, c)
		for k, x := range c {
			walk(x, path+"/"+k, fn)
		}
	case []any:
		for i, x := range c {
			walk(x, path+"/"+strconv.Itoa(i), fn)
		}
	}
}

func mapping(t *testing.T, doc map[string]any, ref string) map[string]any {
	t.Helper()
	v, err := resolve(doc, ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	m, ok := deref(t, doc, v).(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping", ref)
	}
	return m
}

func sequence(t *testing.T, doc map[string]any, ref string) []any {
	t.Helper()
	v, err := resolve(doc, ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	s, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: not a sequence", ref)
	}
	return s
}

func scalar(t *testing.T, doc map[string]any, ref string) int {
	t.Helper()
	v, err := resolve(doc, ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	n, ok := v.(int)
	if !ok {
		t.Fatalf("%s: %v is not an integer", ref, v)
	}
	return n
}

// realtimeMessageConsts returns, for the messages of the realtime channel,
// the const of their payload's property prop ("type" or "action").
func realtimeMessageConsts(t *testing.T, doc map[string]any, prop string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for name, m := range mapping(t, doc, "#/channels/realtime/messages") {
		msg, _ := deref(t, doc, m).(map[string]any)
		payload, _ := deref(t, doc, msg["payload"]).(map[string]any)
		props, _ := payload["properties"].(map[string]any)
		p, _ := deref(t, doc, props[prop]).(map[string]any)
		if c, ok := p["const"].(string); ok {
			if out[c] {
				t.Errorf("realtime message %s: %s %q is described twice", name, prop, c)
			}
			out[c] = true
		}
	}
	return out
}

// itemEvents returns the event names a Catalyst item schema (a oneOf of
// variants) allows.
func itemEvents(t *testing.T, doc map[string]any, schema string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, v := range sequence(t, doc, "#/components/schemas/"+schema+"/oneOf") {
		variant, _ := deref(t, doc, v).(map[string]any)
		props, _ := variant["properties"].(map[string]any)
		ev, _ := deref(t, doc, props["event"]).(map[string]any)
		if c, ok := ev["const"].(string); ok {
			out[c] = true
		}
		if e, ok := ev["enum"].([]any); ok {
			for _, x := range e {
				out[x.(string)] = true
			}
		}
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --- the code ---

type sourceFile struct {
	name string // base name
	file *ast.File
}

// serverDirs are the server's packages, relative to ../server.
var serverDirs = []string{"", "auth", "catalyst", "internal/httpjson", "realtime", "rest", "ws"}

// serverSources parses the non-test Go files of the server's packages,
// each named by its path below ../server ("realtime/conn.go").
func serverSources(t *testing.T) []sourceFile {
	t.Helper()
	var out []sourceFile
	for _, d := range serverDirs {
		for _, f := range parseSources(t, filepath.Join("../server", d)) {
			f.name = path.Join(d, f.name)
			out = append(out, f)
		}
	}
	return out
}

// parseSources parses the non-test Go files of dir.
func parseSources(t *testing.T, dir string) []sourceFile {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []sourceFile
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sourceFile{filepath.Base(n), f})
	}
	if len(out) == 0 {
		t.Fatalf("no Go sources in %s", dir)
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// isFunc reports whether e names function name of package pkg, from
// inside it (name) or from another package (pkg.name).
func isFunc(e ast.Expr, pkg, name string) bool {
	if sel, ok := e.(*ast.SelectorExpr); ok {
		return isIdent(sel.X, pkg) && sel.Sel.Name == name
	}
	return isIdent(e, name)
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// compositeField returns the string literal given to field in a composite
// literal of type typeName, of this package or another
// (typeName{field: "…"}, pkg.typeName{field: "…"}).
func compositeField(n ast.Node, typeName, field string) (string, bool) {
	cl, ok := n.(*ast.CompositeLit)
	if !ok {
		return "", false
	}
	if sel, isSel := cl.Type.(*ast.SelectorExpr); isSel {
		if sel.Sel.Name != typeName {
			return "", false
		}
	} else if !isIdent(cl.Type, typeName) {
		return "", false
	}
	for _, e := range cl.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok && isIdent(kv.Key, field) {
			return stringLit(kv.Value)
		}
	}
	return "", false
}

var typeInLiteral = regexp.MustCompile(`\{"type":"([a-z_]+)"`)

// realtimeServerTypes are the "type" values of the messages the server
// builds: in JSON literals ({"type":"pong"}), in anonymous structs whose
// first field is tagged json:"type" (struct{Type string `json:"type"`; …}{"connected", …}),
// and in channelReply("subscribed", …) calls.
func realtimeServerTypes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	files := append(serverSources(t), parseSources(t, "../stream")...)
	for _, f := range files {
		ast.Inspect(f.file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, ok := stringLit(n); ok {
					for _, m := range typeInLiteral.FindAllStringSubmatch(s, -1) {
						out[m[1]] = true
					}
				}
			case *ast.CallExpr:
				if isIdent(n.Fun, "channelReply") && len(n.Args) > 0 {
					if s, ok := stringLit(n.Args[0]); ok {
						out[s] = true
					}
				}
			case *ast.CompositeLit:
				st, ok := n.Type.(*ast.StructType)
				if !ok || len(st.Fields.List) == 0 || len(n.Elts) == 0 {
					return true
				}
				if tag := st.Fields.List[0].Tag; tag != nil && strings.Contains(tag.Value, `json:"type"`) {
					if s, ok := stringLit(n.Elts[0]); ok {
						out[s] = true
					}
				}
			}
			return true
		})
	}
	requireFloor(t, "realtime server message types", out,
		"connected", "subscribed", "unsubscribed", "pong", "event", "reset", "error")
	return out
}

// gorillaCloseCodes names the close codes of the WebSocket library.
var gorillaCloseCodes = map[string]int{
	"CloseNormalClosure":           websocket.CloseNormalClosure,
	"CloseGoingAway":               websocket.CloseGoingAway,
	"CloseProtocolError":           websocket.CloseProtocolError,
	"CloseUnsupportedData":         websocket.CloseUnsupportedData,
	"CloseNoStatusReceived":        websocket.CloseNoStatusReceived,
	"CloseAbnormalClosure":         websocket.CloseAbnormalClosure,
	"CloseInvalidFramePayloadData": websocket.CloseInvalidFramePayloadData,
	"ClosePolicyViolation":         websocket.ClosePolicyViolation,
	"CloseMessageTooBig":           websocket.CloseMessageTooBig,
	"CloseMandatoryExtension":      websocket.CloseMandatoryExtension,
	"CloseInternalServerErr":       websocket.CloseInternalServerErr,
	"CloseServiceRestart":          websocket.CloseServiceRestart,
	"CloseTryAgainLater":           websocket.CloseTryAgainLater,
	"CloseTLSHandshake":            websocket.CloseTLSHandshake,
}

// libraryCloseCodes are sent by the WebSocket library on its own (a
// protocol error), through the connection's writer.
var libraryCloseCodes = []int{websocket.CloseProtocolError}

var closeConstName = regexp.MustCompile(`^[Cc]lose[A-Z]`)

// closeCodes returns the close codes the server can send, each with whether
// only /api/realtime sends it: the constants named Close…/close… whose value
// is a code, and the first argument of every close(…) call; a code whose
// close calls are all in package realtime is realtime's alone.
func closeCodes(t *testing.T) map[int]bool {
	t.Helper()
	files := serverSources(t)
	codeOf := func(e ast.Expr) (int, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.INT {
				n, err := strconv.Atoi(e.Value)
				return n, err == nil
			}
		case *ast.SelectorExpr:
			if isIdent(e.X, "websocket") && strings.HasPrefix(e.Sel.Name, "Close") {
				n, ok := gorillaCloseCodes[e.Sel.Name]
				if !ok {
					t.Fatalf("websocket.%s: unknown to this test; add it to gorillaCloseCodes", e.Sel.Name)
				}
				return n, true
			}
		}
		return 0, false
	}
	consts := map[string]int{}
	for _, f := range files {
		ast.Inspect(f.file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if closeConstName.MatchString(name.Name) && i < len(vs.Values) {
					if c, ok := codeOf(vs.Values[i]); ok {
						consts[name.Name] = c
					}
				}
			}
			return true
		})
	}
	usedIn := map[int][]string{} // code → files of its close calls
	for _, f := range files {
		ast.Inspect(f.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || (sel.Sel.Name != "close" && sel.Sel.Name != "Close") {
				return true
			}
			c, ok := codeOf(call.Args[0])
			if id, isID := call.Args[0].(*ast.Ident); isID {
				c, ok = consts[id.Name]
			}
			if sel, isSel := call.Args[0].(*ast.SelectorExpr); isSel && !isIdent(sel.X, "websocket") {
				c, ok = consts[sel.Sel.Name] // another server package's: ws.CloseSlowConsumer
			}
			if ok {
				usedIn[c] = append(usedIn[c], f.name)
			}
			return true
		})
	}
	out := map[int]bool{}
	for _, c := range consts {
		out[c] = false
	}
	for c, in := range usedIn {
		out[c] = !slices.ContainsFunc(in, func(f string) bool { return !strings.HasPrefix(f, "realtime") })
	}
	for _, c := range libraryCloseCodes {
		out[c] = false
	}
	return out
}

// intConsts returns the integer constants of files.
func intConsts(t *testing.T, files []sourceFile) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, f := range files {
		ast.Inspect(f.file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.INT {
						if n, err := strconv.ParseInt(lit.Value, 0, 64); err == nil {
							out[name.Name] = int(n)
						}
					}
				}
			}
			return true
		})
	}
	return out
}

// --- sets ---

func requireFloor[K comparable](t *testing.T, what string, got map[K]bool, want ...K) {
	t.Helper()
	for _, w := range want {
		if !got[w] {
			t.Fatalf("%s: found no %v in the code (found %v): if it was removed or renamed, update the documents and this list; otherwise the scan of the code is broken", what, w, got)
		}
	}
}

func assertSameSet(t *testing.T, what string, code, documented map[string]bool) {
	t.Helper()
	for c := range code {
		if !documented[c] {
			t.Errorf("%s: %q is defined by the code but not described in asyncapi.yaml", what, c)
		}
	}
	for d := range documented {
		if !code[d] {
			t.Errorf("%s: %q is described in asyncapi.yaml but the code does not define it", what, d)
		}
	}
}

func keys(m map[int]bool) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[strconv.Itoa(k)] = true
	}
	return out
}
