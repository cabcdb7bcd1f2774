package authserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/idp"
)

// The identity cache gives what json.Unmarshal gives for the same bytes,
// decodes each encoding once, never caches an encoding that does not
// decode, and stays within its bound.
func TestIdentityCache(t *testing.T) {
	var c identityCache
	for _, raw := range []string{
		`{"iss":"https://idp.example","sub":"alice","preferred_username":"alice","email":"a@example.com","email_verified":true,"groups":["admins","readers"]}`,
		`{"iss":"https://idp.example","sub":"bob"}`,
		`{"ISS":"case-insensitive","sub":"b","sub":"duplicate: the last wins","extra":1}`,
	} {
		var want idp.Identity
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		got, err := c.decode([]byte(raw))
		if err != nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("decode(%s) = %+v, %v; want %+v", raw, got, err, want)
		}
		again, _ := c.decode([]byte(raw))
		if again != got {
			t.Errorf("decode(%s) again decoded it again", raw)
		}
	}
	for _, bad := range []string{`{"sub":`, `[]`, `{"groups":"admins"}`, ``} {
		if id, err := c.decode([]byte(bad)); err == nil {
			t.Errorf("decode(%q) = %+v, want an error", bad, id)
		}
		if _, ok := c.m[bad]; ok {
			t.Errorf("%q was cached", bad)
		}
	}
	for i := range 2 * maxIdentityCacheBytes / 64 {
		if _, err := c.decode(fmt.Appendf(nil, `{"sub":"user-%036d"}`, i)); err != nil {
			t.Fatal(err)
		}
		if c.bytes > maxIdentityCacheBytes {
			t.Fatalf("the cache holds %d bytes of keys, bound %d", c.bytes, maxIdentityCacheBytes)
		}
	}
	huge := `{"sub":"h","groups":["` + strings.Repeat("g", maxIdentityCacheBytes/64) + `"]}`
	if id, err := c.decode([]byte(huge)); err != nil || id.Subject != "h" {
		t.Fatalf("huge identity: %v, %v", id, err)
	}
	if _, ok := c.m[huge]; ok {
		t.Error("an identity larger than a 64th of the bound was cached")
	}
}

// BenchmarkIdentityDecode compares decoding a stored identity with
// encoding/json (as every exchange and refresh did) and through the cache.
func BenchmarkIdentityDecode(b *testing.B) {
	raw := []byte(`{"iss":"https://gw.example.com#static","sub":"alice","preferred_username":"alice","email":"alice@example.com","email_verified":true,"groups":["mcp-admins","mcp-readers"]}`)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var id idp.Identity
			if err := json.Unmarshal(raw, &id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cache", func(b *testing.B) {
		var c identityCache
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The cached identities are shared by every exchange and refresh of the
// same encoding, so no path may modify one: after sign-ins, exchanges and
// refreshes of two users, each cached value is still what its key decodes
// to. A path that appended a group to the identity it was handed would
// give it to the next user with the same stored identity.
func TestIdentityCacheValuesStayUnchanged(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Upstream.Users = []idp.User{
			{Username: "alice", PasswordHash: testUserHash, Email: "alice@example.com", Groups: []string{"admins", "readers"}},
			{Username: "bob", PasswordHash: testUserHash, Groups: []string{"readers"}},
		}
	}})
	c := e.register("http://127.0.0.1:3000/cb", true)
	for _, u := range []string{"alice", "bob", "alice"} {
		q := e.loginAs(e.browser(), authorizeParams(c), u, testPassword)
		st, tok := e.exchange(c, q.Get("code"), nil)
		if st != http.StatusOK {
			t.Fatalf("%s exchange: %d %v", u, st, tok)
		}
		for range 3 {
			if st, tok = e.refresh(c, tok["refresh_token"].(string)); st != http.StatusOK {
				t.Fatalf("%s refresh: %d %v", u, st, tok)
			}
		}
	}
	e.srv.idents.mu.RLock()
	defer e.srv.idents.mu.RUnlock()
	if len(e.srv.idents.m) < 2 {
		t.Fatalf("%d identities cached, want both users'", len(e.srv.idents.m))
	}
	for raw, cached := range e.srv.idents.m {
		var fresh idp.Identity
		if err := json.Unmarshal([]byte(raw), &fresh); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*cached, fresh) {
			t.Errorf("cached identity changed after use:\n got %+v\nwant %+v (from %s)", *cached, fresh, raw)
		}
	}
}
