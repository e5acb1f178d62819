package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"
)

func withFields(base map[string]any, kv ...any) json.RawMessage {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
			continue
		}
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// TestParseJWK: each key type is read into the key type its verifier
// takes, with the algorithms it may verify; keys pgcast must not use are
// refused with the reason.
func TestParseJWK(t *testing.T) {
	t.Parallel()
	rsaJWK := jwkOf("r", testRSA(), "")
	ecJWK := jwkOf("e", testEC256(), "")
	edJWK := jwkOf("d", testEd25519(), "")
	small := mustRSA(1024)
	ok := []struct {
		name string
		raw  json.RawMessage
		algs []string
	}{
		{"RSA", withFields(rsaJWK), rsaAlgs},
		{"RSA with alg", withFields(rsaJWK, "alg", "PS384"), []string{"PS384"}},
		{"RSA without use", withFields(rsaJWK, "use", nil), rsaAlgs},
		{"RSA padded base64", withFields(rsaJWK, "e", "AQAB"), rsaAlgs},
		{"RSA key_ops verify", withFields(rsaJWK, "key_ops", []string{"verify"}), rsaAlgs},
		{"P-256", withFields(ecJWK), []string{"ES256"}},
		{"P-384", withFields(jwkOf("e", testEC384(), "")), []string{"ES384"}},
		{"P-521", withFields(jwkOf("e", testEC521(), "ES512")), []string{"ES512"}},
		{"Ed25519", withFields(edJWK), []string{"EdDSA"}},
		{"Ed25519 with RFC 9864 alg", withFields(edJWK, "alg", "Ed25519"), []string{"EdDSA"}},
	}
	for _, c := range ok {
		k, err := parseJWK(c.raw)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(k.algs, c.algs) {
			t.Errorf("%s: algs %v, want %v", c.name, k.algs, c.algs)
		}
		switch k.key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			t.Errorf("%s: key of type %T", c.name, k.key)
		}
	}
	offCurve := withFields(ecJWK, "y", b64u(make([]byte, 32)))
	bad := []struct {
		name string
		raw  json.RawMessage
		want string
	}{
		{"use enc", withFields(rsaJWK, "use", "enc"), `use "enc" is not sig`},
		{"key_ops sign only", withFields(rsaJWK, "key_ops", []string{"sign"}), "key_ops without verify"},
		{"oct", json.RawMessage(`{"kty":"oct","kid":"h","k":"c2VjcmV0"}`), "symmetric (oct) keys are never taken"},
		{"no kty", json.RawMessage(`{"kid":"x"}`), "no kty"},
		{"unknown kty", withFields(rsaJWK, "kty", "RSA-HSM"), `unsupported kty "RSA-HSM"`},
		{"RSA 1024", json.RawMessage(`{"kty":"RSA","n":"` + b64u(small.N.Bytes()) + `","e":"AQAB"}`), "RSA modulus of 1024 bits"},
		{"RSA no n", withFields(rsaJWK, "n", nil), "n is missing"},
		{"RSA e even", withFields(rsaJWK, "e", b64u(big.NewInt(65536).Bytes())), "exponent 65536 is not usable"},
		{"RSA e 1", withFields(rsaJWK, "e", "AQ"), "exponent 1 is not usable"},
		{"RSA e huge", withFields(rsaJWK, "e", b64u([]byte{1, 0, 0, 0, 1})), "exponent too large"},
		{"RSA n not base64", withFields(rsaJWK, "n", "!!"), "n is not base64url"},
		{"RSA with ES256", withFields(rsaJWK, "alg", "ES256"), `alg "ES256" does not fit a RSA key`},
		{"RSA with HS256", withFields(rsaJWK, "alg", "HS256"), `alg "HS256" does not fit a RSA key`},
		{"EC with RS256", withFields(ecJWK, "alg", "RS256"), `alg "RS256" does not fit a EC P-256 key`},
		{"P-256 with ES384", withFields(ecJWK, "alg", "ES384"), `alg "ES384" does not fit a EC P-256 key`},
		{"EC short x", withFields(ecJWK, "x", b64u(make([]byte, 31))), "coordinates must be 32 bytes"},
		{"EC off the curve", offCurve, "invalid P-256 point"},
		{"EC secp256k1", withFields(ecJWK, "crv", "secp256k1"), `unsupported EC curve "secp256k1"`},
		{"Ed448", withFields(edJWK, "crv", "Ed448"), `unsupported OKP curve "Ed448"`},
		{"X25519", withFields(edJWK, "crv", "X25519"), `unsupported OKP curve "X25519"`},
		{"Ed25519 short", withFields(edJWK, "x", b64u(make([]byte, 31))), "Ed25519 key of 31 bytes"},
		{"Ed25519 with ES256", withFields(edJWK, "alg", "ES256"), `does not fit a Ed25519 key`},
		{"not an object", json.RawMessage(`[]`), "malformed"},
		{"kid a number", json.RawMessage(`{"kty":"RSA","kid":5}`), "malformed"},
	}
	for _, c := range bad {
		if k, err := parseJWK(c.raw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: key %v, err %v; want %q", c.name, k, err, c.want)
		}
	}
	// A set keeps its usable keys and says why it skipped the others.
	set, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK, json.RawMessage(`{"kty":"oct","k":"c2VjcmV0"}`), edJWK}})
	keys, skipped, err := parseJWKS(set, 100)
	if err != nil || len(keys) != 2 || len(skipped) != 1 || !strings.Contains(skipped[0], "key 1") {
		t.Errorf("parseJWKS: %d keys, skipped %q, %v", len(keys), skipped, err)
	}
}
