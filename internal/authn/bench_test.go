package authn

import (
	"testing"
)

// Cold: the verified-token cache is disabled, so every op parses the JWS,
// selects the key and checks signature and claims. Cached: the same token
// again, served from the cache (SHA-256 of the token + map lookup).
func BenchmarkVerify(b *testing.B) {
	for _, k := range []testKey{keyRS256(), keyPS256(), keyES256(), keyEdDSA()} {
		for _, mode := range []struct {
			name      string
			cacheSize int
		}{{"cold", -1}, {"cached", 0}} {
			b.Run(string(k.alg)+"/"+mode.name, func(b *testing.B) {
				clock := newFakeClock()
				idp := newTestIdP(b, k)
				cfg := jwtConfig(idp)
				cfg.CacheSize = mode.cacheSize
				a, _ := newAuth(b, cfg, clock)
				r := bearer(mint(b, k, idp.claims(clock.Now(), map[string]any{
					"preferred_username": "alice", "groups": []any{"mcp-readers", "ops"}, "scope": "mcp:read mcp:write",
				}), mintOpts{}))
				if _, err := a.Authenticate(r); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.Authenticate(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyCachedParallel measures the cached path under contention.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	clock := newFakeClock()
	idp := newTestIdP(b, keyRS256())
	a, _ := newAuth(b, jwtConfig(idp), clock)
	tok := mint(b, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{})
	if _, err := a.Authenticate(bearer(tok)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := bearer(tok)
		for pb.Next() {
			if _, err := a.Authenticate(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
