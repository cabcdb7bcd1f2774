package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/postgres"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

func runPolicyReload(cfgPath string) (string, error) {
	cmd := newPolicyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"reload", "--config", cfgPath})
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// With SQLite a reload request would reach no other process: refused, and
// the message says what works instead.
func TestPolicyReloadNeedsPostgres(t *testing.T) {
	_, _, cfgPath := staticASConfig(t, "")
	if _, err := runPolicyReload(cfgPath); err == nil || !strings.Contains(err.Error(), "SIGHUP") {
		t.Errorf("policy reload on SQLite: %v", err)
	}
}

// On PostgreSQL every gateway sharing the store hears the request.
func TestPolicyReloadNotifies(t *testing.T) {
	schemaDSN := pgtest.SchemaDSN(t)
	ctx := context.Background()
	gateway, err := postgres.Open(ctx, schemaDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer gateway.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := gateway.Subscribe(sctx)
	for c := range changes { // listening once the first ChangeAll arrives
		if c.Kind == store.ChangeAll {
			break
		}
	}

	_, _, cfgPath := staticASConfig(t, `store: {driver: postgres, dsn: "`+schemaDSN+`"}`)
	cfg, _ := os.ReadFile(cfgPath)
	// staticASConfig names SQLite after extra: keep only the PostgreSQL store.
	os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "store: {driver: sqlite", "# store: {driver: sqlite", 1)), 0o600)
	out, err := runPolicyReload(cfgPath)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	timeout := time.After(time.Second)
	for {
		select {
		case c := <-changes:
			if c.Kind == store.ChangePolicy {
				return
			}
		case <-timeout:
			t.Fatal("no policy reload request within 1s")
		}
	}
}
