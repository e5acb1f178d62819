package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// FuzzParseJWKS feeds arbitrary key-set documents (what a provider, or
// whoever sits on the path to it, serves) to the parser. It must never
// panic, and every key it returns must be a public key of a supported type
// whose algorithms are those of its type only: never HMAC, never another
// type's.
func FuzzParseJWKS(f *testing.F) {
	seeds := []any{
		map[string]any{"keys": []any{jwkOf("r", testRSA(), "")}},
		map[string]any{"keys": []any{jwkOf("e", testEC256(), "ES256"), jwkOf("e384", testEC384(), "")}},
		map[string]any{"keys": []any{jwkOf("d", testEd25519(), "EdDSA")}},
		map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": "c2VjcmV0"}}},
		map[string]any{"keys": []any{map[string]any{"kty": "RSA", "alg": "HS256", "n": "AQAB", "e": "AQAB"}}},
		map[string]any{"keys": []any{map[string]any{"kty": "EC", "crv": "P-256", "x": "", "y": ""}}},
	}
	for _, s := range seeds {
		b, _ := json.Marshal(s)
		f.Add(b)
	}
	for _, s := range []string{`{"keys":[]}`, `{"keys":null}`, `{}`, `[]`, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, `{"keys":[{}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, _, err := parseJWKS(body, 100)
		if err != nil {
			if keys != nil {
				t.Fatal("keys returned with an error")
			}
			return
		}
		if len(keys) == 0 || len(keys) > 100 {
			t.Fatalf("%d keys without an error", len(keys))
		}
		for _, k := range keys {
			if len(k.algs) == 0 {
				t.Fatalf("key %q verifies nothing", k.kid)
			}
			var fits []string
			switch key := k.key.(type) {
			case *rsa.PublicKey:
				if bits := key.N.BitLen(); bits < minRSABits || bits > maxRSABits || key.E < 3 {
					t.Fatalf("weak RSA key accepted: %d bits, e %d", bits, key.E)
				}
				fits = rsaAlgs
			case *ecdsa.PublicKey:
				fits = []string{ecAlgs[key.Curve.Params().Name]}
			case ed25519.PublicKey:
				fits = []string{"EdDSA"}
			default:
				t.Fatalf("key of type %T", k.key)
			}
			for _, alg := range k.algs {
				if !slices.Contains(fits, alg) || strings.HasPrefix(alg, "HS") {
					t.Fatalf("a %T key verifies %s", k.key, alg)
				}
			}
		}
	})
}

// FuzzLookupClaim: claim-path lookup on arbitrary claims and paths never
// panics, finds a top-level claim by its whole name, and finds only values
// that are in the document.
func FuzzLookupClaim(f *testing.F) {
	for _, s := range []struct{ doc, path string }{
		{`{"app_metadata":{"role":"admin"}}`, "app_metadata.role"},
		{`{"https://example.com/roles":["a","b"]}`, "https://example.com/roles"},
		{`{"https://example.com/app":{"role":"x"}}`, "https://example.com/app.role"},
		{`{"a.b":{"c":1},"a":{"b":{"c":2}}}`, "a.b.c"},
		{`{"a":"str"}`, "a.b"},
		{`{"":{"":1}}`, "."},
		{`{"a":{"b":{"c":{"d":{"e":1}}}}}`, "a.b.c.d.e"},
	} {
		f.Add(s.doc, s.path)
	}
	f.Fuzz(func(t *testing.T, doc, path string) {
		var claims map[string]json.RawMessage
		if json.Unmarshal([]byte(doc), &claims) != nil {
			return
		}
		got, ok := lookupClaim(claims, path)
		if v, top := claims[path]; top && (!ok || string(got) != string(v)) {
			t.Fatalf("top-level %q: got %s, %v; want %s", path, got, ok, v)
		}
		if ok && !strings.Contains(doc, strings.TrimSpace(string(got))) {
			t.Fatalf("found %s, which is not in %s", got, doc)
		}
	})
}
