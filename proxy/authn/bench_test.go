package authn

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func benchAuth(b *testing.B, cacheSize int, tok string) {
	a := newAuth(b, func(c *Config) { c.CacheSize = cacheSize })
	h := "Bearer " + tok
	if _, err := a.Authenticate(h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Authenticate(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateES256Cold(b *testing.B) {
	k := testKeySet(b)
	benchAuth(b, -1, sign(b, jwt.SigningMethodES256, k.ec, map[string]any{"kid": thumb(b, &k.ec.PublicKey)}, baseClaims()))
}

func BenchmarkAuthenticateCached(b *testing.B) {
	k := testKeySet(b)
	benchAuth(b, 0, sign(b, jwt.SigningMethodES256, k.ec, map[string]any{"kid": thumb(b, &k.ec.PublicKey)}, baseClaims()))
}

func BenchmarkAuthenticateHS256(b *testing.B) {
	benchAuth(b, -1, sign(b, jwt.SigningMethodHS256, []byte(testSecret), nil, baseClaims()))
}

func BenchmarkAuthenticateCachedParallel(b *testing.B) {
	k := testKeySet(b)
	a := newAuth(b, nil)
	h := "Bearer " + sign(b, jwt.SigningMethodES256, k.ec, nil, baseClaims())
	if _, err := a.Authenticate(h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHashToken is the part of a cache hit spent hashing (the rest is the map).
func BenchmarkHashToken(b *testing.B) {
	k := testKeySet(b)
	tok := sign(b, jwt.SigningMethodES256, k.ec, map[string]any{"kid": thumb(b, &k.ec.PublicKey)}, baseClaims())
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		_ = hashToken(tok)
	}
}
