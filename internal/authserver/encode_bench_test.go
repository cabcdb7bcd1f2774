package authserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/idp"
)

// BenchmarkGrantEncoding compares, per grant, what the token endpoint
// encodes by reflection (encoding/json, as before issue 15's second pass)
// with what it does now: the access-token claims and the answer appended
// (jsonenc), and the re-identified user compared as values instead of
// JSON-encoded to compare bytes.
func BenchmarkGrantEncoding(b *testing.B) {
	c := &accessClaims{Issuer: "https://gw.example.com", Subject: "alice", Audience: "https://gw.example.com/mcp", ClientID: "client-0123456789",
		Scope: "mcp", Groups: []string{"mcp-admins"}, JTI: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", TSID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
		IssuedAt: 1767319200, Expiry: 1767320100, Email: "alice@example.com", EmailVerified: true, Username: "alice"}
	resp := &tokenResponse{AccessToken: strings.Repeat("eyJhbGciOiJFUzI1NiJ9-_", 30), TokenType: "Bearer", ExpiresIn: 900, RefreshToken: "0123456789012345678901234567890123456789012", Scope: "mcp"}
	id := &idp.Identity{Issuer: "https://gw.example.com#static", Subject: "alice", Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"mcp-admins"}}
	stored, _ := json.Marshal(id)
	var prev idp.Identity
	_ = json.Unmarshal(stored, &prev)
	buf := make([]byte, 0, 1024)
	b.Run("claims/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(c)
		}
	})
	b.Run("claims/append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = c.AppendJSON(buf[:0])
		}
	})
	b.Run("answer/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(resp)
		}
	})
	b.Run("answer/append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = resp.appendJSON(make([]byte, 0, 256+len(resp.AccessToken)))
		}
	})
	b.Run("identity/encode-compare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, _ := json.Marshal(id)
			_ = string(e) == string(stored)
		}
	})
	b.Run("identity/equal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = id.Equal(&prev)
		}
	})
}
