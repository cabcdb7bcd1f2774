package authserver

import (
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestBcryptCache(t *testing.T) {
	hash := func(secret string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	h1, h2 := hash("secret-one"), hash("secret-two")
	var c bcryptCache
	steps := []struct {
		hash, secret string
		want         bool
		cached       int // entries after the check
	}{
		{h1, "wrong", false, 0},
		{h1, "secret-one", true, 1},
		{h1, "secret-one", true, 1}, // from the cache
		{h1, "wrong", false, 1},     // a match does not open the door to other secrets
		{h1, "secret-one ", false, 1},
		{h2, "secret-one", false, 1}, // the entry is bound to its hash
		{h2, "secret-two", true, 2},
		{"$2a$10$not-a-valid-hash", "secret-one", false, 2},
	}
	for i, s := range steps {
		if got := c.check(s.hash, s.secret); got != s.want {
			t.Errorf("step %d: check(%q) = %v, want %v", i, s.secret, got, s.want)
		}
		if len(c.m) != s.cached {
			t.Errorf("step %d: %d cached matches, want %d", i, len(c.m), s.cached)
		}
	}
}

func TestBcryptCacheBounded(t *testing.T) {
	// bcrypt ignores bytes past 72, so one secret has endless variants.
	base := string(make([]byte, 72))
	h, err := bcrypt.GenerateFromPassword([]byte(base), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var c bcryptCache
	for i := range maxBcryptCacheEntries + 10 {
		if !c.check(string(h), base+string(rune('a'+i%26))+string(rune(i))) {
			t.Fatalf("variant %d did not match", i)
		}
	}
	if len(c.m) > maxBcryptCacheEntries {
		t.Errorf("cache holds %d entries, bound is %d", len(c.m), maxBcryptCacheEntries)
	}
}

// TestStaticClientBcryptSecret: a static client configured with a bcrypt
// hash authenticates at the token endpoint, repeatedly, and a wrong secret
// is refused after a right one.
func TestStaticClientBcryptSecret(t *testing.T) {
	const secret = "operator-chosen secret"
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.StaticClients = []StaticClient{{ClientID: "ops", ClientSecretHash: string(h), RedirectURIs: []string{"https://ops.example.com/cb"}}}
	}})
	c := regClient{ID: "ops", Secret: secret, Redirect: "https://ops.example.com/cb"}
	rt := e.tokens(c)["refresh_token"].(string)
	for i := range 3 {
		st, m := e.refresh(c, rt)
		if st != http.StatusOK {
			t.Fatalf("refresh %d: %d %v", i, st, m)
		}
		rt = m["refresh_token"].(string)
	}
	bad := c
	bad.Secret = secret + "x"
	if st, m := e.refresh(bad, rt); st != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("wrong secret after right ones: %d %v", st, m)
	}
}
