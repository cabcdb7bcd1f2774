package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

func TestGrantsListRevoke(t *testing.T) {
	ctx := context.Background()
	dir, db, cfgPath := staticASConfig(t, "public_url: https://gw.example.com")
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := time.Now()
	seed := func(id, user, client string, groups ...string) {
		t.Helper()
		identity, _ := json.Marshal(map[string]any{"iss": "https://gw.example.com#static", "sub": user, "preferred_username": user, "groups": groups})
		code := &store.AuthCode{Hash: store.HashKey("code-" + id), ClientID: client, GrantID: id, ExpiresAt: n.Add(time.Minute)}
		if err := st.CreateAuthCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		_, err := st.RedeemAuthCode(ctx, code.Hash, func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: id, ClientID: client, UserKey: "https://gw.example.com#static#" + user, Identity: identity,
					Scopes: []string{"mcp"}, CreatedAt: n, ExpiresAt: n.Add(time.Hour)},
				&store.RefreshToken{Hash: store.HashKey("rt-" + id), GrantID: id, ClientID: client, CreatedAt: n, ExpiresAt: n.Add(time.Hour)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seed("g-alice-a", "alice", "client-a", "admins")
	seed("g-alice-b", "alice", "https://client.example/\x1b[2Jmeta", "admins")
	seed("g-bob-a", "bob", "client-a", "readers")

	run := func(args ...string) (string, error) {
		cmd := newGrantsCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--config", cfgPath))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	out, err := run("list")
	if err != nil || !strings.Contains(out, "3 grants") || !strings.Contains(out, "g-bob-a    bob    bob       readers  client-a") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a control character reached the terminal")
	}
	out, err = run("list", "--user", "alice", "--json")
	var listed []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 || listed[0]["tsid"] != "g-alice-a" {
		t.Fatalf("list --user alice --json: %v\n%s", err, out)
	}

	if _, err := run("revoke"); err == nil {
		t.Error("revoke without --user or --client revoked")
	}
	out, err = run("revoke", "--user", "alice")
	if err != nil || !strings.Contains(out, "2 grants revoked") {
		t.Fatalf("revoke --user alice: %v\n%s", err, out)
	}
	for id, revoked := range map[string]bool{"g-alice-a": true, "g-alice-b": true, "g-bob-a": false} {
		g, err := st.GetGrant(ctx, id)
		if err != nil || g.Revoked != revoked {
			t.Errorf("%s: revoked = %v, want %v (%v)", id, g.Revoked, revoked, err)
		}
		_, err = st.GetRefreshToken(ctx, store.HashKey("rt-"+id))
		if gone := errors.Is(err, store.ErrNotFound); gone != revoked {
			t.Errorf("%s: refresh token deleted = %v, want %v", id, gone, revoked)
		}
	}
	out, _ = run("list", "--client", "client-a")
	if !strings.Contains(out, "revoked") || !strings.Contains(out, "active") || !strings.Contains(out, "2 grants") {
		t.Errorf("list --client client-a after revoke:\n%s", out)
	}
	// Only active grants are revoked again.
	if out, err := run("revoke", "--client", "client-a"); err != nil || !strings.Contains(out, "revoked g-bob-a\n1 grants revoked") {
		t.Errorf("revoke --client: %v\n%s", err, out)
	}
	if out, err := run("revoke", "--user", "nobody"); err != nil || !strings.Contains(out, "0 grants revoked") {
		t.Errorf("revoke unknown user: %v\n%s", err, out)
	}

	// Only in authorization_server mode.
	jwtCfg := filepath.Join(dir, "jwt.yaml")
	os.WriteFile(jwtCfg, []byte(`
listen: 127.0.0.1:8080
auth: {mode: jwt, jwt: {issuers: [{issuer: "https://idp.example.com", audience: "https://gw.example.com/mcp"}]}}
backends: [{name: demo, url: "http://127.0.0.1:9000/mcp"}]
`), 0o600)
	cmd := newGrantsCmd()
	cmd.SetOut(new(bytes.Buffer))
	cmd.SetErr(new(bytes.Buffer))
	cmd.SetArgs([]string{"list", "--config", jwtCfg})
	if err := cmd.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), "authorization_server") {
		t.Errorf("jwt mode: %v", err)
	}
}
