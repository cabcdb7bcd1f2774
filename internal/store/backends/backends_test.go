package backends_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	s, err := backends.Open(ctx, store.Config{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db")}, log)
	if err != nil {
		t.Fatalf("sqlite: %v", err)
	}
	if _, ok := s.(*sqlite.Store); !ok {
		t.Errorf("sqlite driver opened %T", s)
	}
	s.Close()

	s, err = backends.Open(ctx, store.Config{Driver: "memory"}, log)
	if err != nil {
		t.Fatalf("memory: %v", err)
	}
	if _, ok := s.(*memory.Store); !ok {
		t.Errorf("memory driver opened %T", s)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("memory driver did not warn; logs: %s", logs.String())
	}

	if _, err := backends.Open(ctx, store.Config{Driver: "redis"}, log); err == nil {
		t.Error("unknown driver opened")
	}
	if _, err := backends.Open(ctx, store.Config{Driver: "postgres", DSN: "postgres://u:pw@127.0.0.1:1/db?connect_timeout=1"}, log); err == nil {
		t.Error("postgres on a closed port opened")
	}
}
