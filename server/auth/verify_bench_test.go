package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures one verification per algorithm family, the
// key-set ones with their key cached (no fetch on the path).
func BenchmarkVerify(b *testing.B) {
	srv := newJWKSServer(b, jwkOf("rsa", testRSA(), ""), jwkOf("ec", testEC256(), ""), jwkOf("ed", testEd25519(), ""))
	a, err := NewAuthenticator(Config{Secret: authTestSecret, JWKSURLs: []string{srv.URL}, JWKS: JWKSConfig{HTTPClient: srv.Client()}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = a.Stop(context.Background()) }()
	claims := jwt.MapClaims{"sub": "u1", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}
	for _, c := range []struct {
		m   jwt.SigningMethod
		key any
		kid string
	}{
		{jwt.SigningMethodHS256, authTestSecret, ""},
		{jwt.SigningMethodRS256, testRSA(), "rsa"},
		{jwt.SigningMethodES256, testEC256(), "ec"},
		{jwt.SigningMethodEdDSA, testEd25519(), "ed"},
	} {
		tok := signJWT(b, c.m, c.key, c.kid, claims)
		b.Run(c.m.Alg(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := a.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
