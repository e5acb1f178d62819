package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// RSA moduli pgcast takes from a key set: below 2048 bits a key is within
// reach of factoring (NIST disallowed it in 2013); above 8192, one
// verification costs enough CPU to be a lever for a request flood.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// Algorithms (JWS "alg") each key type verifies. An RSA key verifies
// PKCS #1 v1.5 and PSS signatures, an EC key only the ECDSA algorithm of its
// curve (RFC 7518 §3.4 ties each to one curve and hash), an Ed25519 key only
// EdDSA. HMAC is never among them: the HS256 secret is Config.Secret, never
// a key-set entry, which is what makes algorithm confusion (a token
// "HS256"-signed with a public key's bytes) impossible.
var (
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecAlgs  = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
	// asymmetricAlgs is every algorithm a key set can verify, in the
	// order error messages list them.
	asymmetricAlgs = append(slices.Clone(rsaAlgs), "ES256", "ES384", "ES512", "EdDSA")
)

var ecCurves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

// verifyKey is one usable public key from a key set.
type verifyKey struct {
	kid string
	// key is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey: the
	// types golang-jwt's RSA, RSA-PSS, ECDSA and EdDSA methods accept, and
	// none of them the []byte its HMAC methods take.
	key  any
	kty  string
	algs []string
}

func (k *verifyKey) allows(alg string) bool { return slices.Contains(k.algs, alg) }

// jwk is a JSON Web Key (RFC 7517 §4) as far as pgcast reads it.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	Alg    string   `json:"alg"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// parseJWKS parses a JWK Set (RFC 7517 §5). Keys pgcast cannot or must not
// use (another use, an unsupported type or curve, a weak or malformed key)
// are skipped, each with a reason; a set with more than maxKeys entries, or
// without one usable key, is an error, so that the previous set stays in use.
func parseJWKS(body []byte, maxKeys int) (keys []*verifyKey, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`not a JWK set: no "keys" array`)
	}
	if len(set.Keys) > maxKeys {
		return nil, nil, fmt.Errorf("%d keys, more than the %d allowed", len(set.Keys), maxKeys)
	}
	for i, raw := range set.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("no usable signing key among %d (%s)", len(set.Keys), strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}

// parseJWK parses one key, or says why it is not used.
func parseJWK(raw json.RawMessage) (*verifyKey, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("malformed: %w", err)
	}
	name := "kid " + quoteKid(j.Kid)
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("%s: use %q is not sig", name, j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, fmt.Errorf("%s: key_ops without verify", name)
	}
	k := &verifyKey{kid: j.Kid, kty: j.Kty}
	var err error
	switch j.Kty {
	case "RSA":
		k.key, err = parseRSA(j)
		k.algs = rsaAlgs
	case "EC":
		k.key, err = parseEC(j)
		k.algs = []string{ecAlgs[j.Crv]}
	case "OKP":
		k.key, err = parseOKP(j)
		k.algs = []string{"EdDSA"}
	case "oct":
		// A shared secret published in a key set is no secret; and an
		// HMAC key is exactly what algorithm confusion needs.
		err = errors.New("symmetric (oct) keys are never taken from a key set")
	case "":
		err = errors.New("no kty")
	default:
		err = fmt.Errorf("unsupported kty %q", j.Kty)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if j.Alg != "" {
		alg := j.Alg
		if alg == "Ed25519" { // RFC 9864's fully-specified name of EdDSA on Ed25519
			alg = "EdDSA"
		}
		if !k.allows(alg) {
			return nil, fmt.Errorf("%s: alg %q does not fit a %s key", name, j.Alg, describeKeyType(k))
		}
		k.algs = []string{alg}
	}
	return k, nil
}

func describeKeyType(k *verifyKey) string {
	switch key := k.key.(type) {
	case *ecdsa.PublicKey:
		return "EC " + key.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return k.kty
}

// quoteKid quotes a key id for messages, cut short: it comes from the
// network.
func quoteKid(kid string) string {
	if len(kid) > 64 {
		kid = kid[:64] + "…"
	}
	return fmt.Sprintf("%q", kid)
}

// b64 fields of a JWK are base64url without padding (RFC 7515 §2); padding
// is tolerated, since some providers add it.
func decodeB64(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%s is not base64url: %w", field, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is missing", field)
	}
	return b, nil
}

func parseRSA(j jwk) (*rsa.PublicKey, error) {
	nb, err := decodeB64("n", j.N)
	if err != nil {
		return nil, err
	}
	eb, err := decodeB64("e", j.E)
	if err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits, want %d to %d", bits, minRSABits, maxRSABits)
	}
	if len(eb) > 4 {
		return nil, errors.New("RSA exponent too large")
	}
	var e int
	for _, b := range eb {
		e = e<<8 | int(b)
	}
	// crypto/rsa takes exponents in [2, 2³¹−1]; an even one cannot be an
	// RSA exponent at all.
	if e < 3 || e > 1<<31-1 || e%2 == 0 {
		return nil, fmt.Errorf("RSA exponent %d is not usable", e)
	}
	return &rsa.PublicKey{N: n, E: e}, nil
}

func parseEC(j jwk) (*ecdsa.PublicKey, error) {
	curve, ok := ecCurves[j.Crv]
	if !ok {
		return nil, fmt.Errorf("unsupported EC curve %q", j.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := decodeB64("x", j.X)
	if err != nil {
		return nil, err
	}
	y, err := decodeB64("y", j.Y)
	if err != nil {
		return nil, err
	}
	// RFC 7518 §6.2.1.2: each coordinate is the full size of the curve's
	// field, so that the uncompressed point below has one meaning.
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("%s coordinates must be %d bytes each", j.Crv, size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("invalid %s point: %w", j.Crv, err)
	}
	return key, nil
}

func parseOKP(j jwk) (ed25519.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return nil, fmt.Errorf("unsupported OKP curve %q", j.Crv)
	}
	x, err := decodeB64("x", j.X)
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 key of %d bytes, want %d", len(x), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}
