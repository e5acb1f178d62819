package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary tokens (what clients send in Authorization,
// ?token= and ws-auth) to Verify. It must never panic, must accept a token
// only when its signature is the HMAC-SHA256 of its first two segments under
// the server's secret, must then return a usable identity, and must never
// echo the token in an error.
func FuzzVerify(f *testing.F) {
	a, err := NewAuthenticator(Config{Secret: authTestSecret})
	if err != nil {
		f.Fatal(err)
	}
	other, err := NewAuthenticator(Config{Secret: []byte(strings.Repeat("x", 48))})
	if err != nil {
		f.Fatal(err)
	}
	good, err := a.Mint("user_1", RoleAuthenticated, 1, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	admin, _ := a.Mint("root", RoleAdmin, 7, time.Hour)
	expired, _ := a.Mint("user_1", RoleAuthenticated, 1, -time.Hour)
	forged, _ := other.Mint("user_1", RoleAdmin, 1, time.Hour)
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	for _, seed := range []string{
		good, admin, expired, forged, none,
		parts[0] + "." + parts[1] + ".", // signature stripped
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		good + ".",
		"", ".", "..", "a.b.c", "Bearer " + good,
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u","exp":1e300,"env":1.5,"role":null}`)) + ".x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, exp, err := a.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("error %v wraps neither ErrInvalidToken nor ErrTokenExpired", err)
			}
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Fatalf("the error echoes the token: %v", err)
			}
			return
		}
		seg := strings.Split(token, ".")
		if len(seg) != 3 {
			t.Fatalf("accepted a token of %d segments: %q", len(seg), token)
		}
		sig, derr := base64.RawURLEncoding.DecodeString(seg[2])
		mac := hmac.New(sha256.New, authTestSecret)
		mac.Write([]byte(seg[0] + "." + seg[1]))
		if derr != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted a token not signed with the secret: %q", token)
		}
		if id.UserID == "" || id.Environment < 1 || (id.Role != RoleAuthenticated && id.Role != RoleAdmin) {
			t.Fatalf("accepted token gave identity %+v", id)
		}
		if !exp.After(time.Now().Add(-time.Minute)) {
			t.Fatalf("accepted a token that expired at %v", exp)
		}
	})
}
