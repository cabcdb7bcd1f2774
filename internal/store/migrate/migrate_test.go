package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// fakeTx is a database of one schema_migrations table.
type fakeTx struct {
	current int
	log     []string
	failOn  string
}

func (f *fakeTx) Exec(_ context.Context, sql string, args ...any) error {
	if f.failOn != "" && strings.Contains(sql, f.failOn) {
		return errors.New("boom")
	}
	if sql == "RECORD" {
		f.current = args[0].(int)
	}
	f.log = append(f.log, sql)
	return nil
}

func (f *fakeTx) QueryInt(context.Context, string) (int, error) { return f.current, nil }

var dialect = Dialect{Name: "db", Lock: "LOCK", CreateTable: "CREATE", Record: "RECORD"}

func files(names ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for _, n := range names {
		m[n] = &fstest.MapFile{Data: []byte("-- " + n)}
	}
	return m
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		current int
		files   fstest.MapFS
		failOn  string
		wantLog string
		wantErr string
	}{
		{"fresh", 0, files("0001_init.sql", "0002_more.sql"), "",
			"LOCK|CREATE|-- 0001_init.sql|RECORD|-- 0002_more.sql|RECORD", ""},
		{"applied ones skipped", 1, files("0001_init.sql", "0002_more.sql"), "",
			"LOCK|CREATE|-- 0002_more.sql|RECORD", ""},
		{"up to date", 2, files("0001_init.sql", "0002_more.sql"), "", "LOCK|CREATE", ""},
		{"newer database refused", 3, files("0001_init.sql", "0002_more.sql"), "", "LOCK|CREATE",
			"db: database schema version 3 is newer than this binary supports (2)"},
		{"gap", 0, files("0001_init.sql", "0003_more.sql"), "", "", `db: bad migration file name "0003_more.sql"`},
		{"unnumbered", 0, files("init.sql"), "", "", `db: bad migration file name "init.sql"`},
		{"not sql", 0, files("0001_init.txt"), "", "", `db: bad migration file name "0001_init.txt"`},
		{"apply fails", 0, files("0001_init.sql"), "0001", "", "db: apply migration 1: boom"},
		{"lock fails", 0, files("0001_init.sql"), "LOCK", "", "db: lock for migration: boom"},
		{"record fails", 0, files("0001_init.sql"), "RECORD", "", "db: record migration 1: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := &fakeTx{current: tt.current, failOn: tt.failOn}
			err := Run(context.Background(), dialect, tx, tt.files)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tx.log, "|"); got != tt.wantLog {
				t.Errorf("ran %q, want %q", got, tt.wantLog)
			}
		})
	}
}

func TestRunWithoutLock(t *testing.T) {
	tx := &fakeTx{}
	d := dialect
	d.Lock = ""
	if err := Run(context.Background(), d, tx, files("0001_init.sql")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tx.log, "|"); got != "CREATE|-- 0001_init.sql|RECORD" {
		t.Errorf("ran %q", got)
	}
}

// fakeCommitter is a fakeTx that records how it ended.
type fakeCommitter struct {
	fakeTx
	ended string
}

func (f *fakeCommitter) Commit(context.Context) error {
	if f.ended == "" {
		f.ended = "commit"
	}
	return nil
}

func (f *fakeCommitter) Rollback(context.Context) error {
	if f.ended == "" {
		f.ended = "rollback"
	}
	return nil
}

func TestApply(t *testing.T) {
	embedded := fstest.MapFS{"migrations/0001_init.sql": {Data: []byte("-- 0001")}}
	for _, tc := range []struct {
		name      string
		fsys      fstest.MapFS
		failOn    string
		beginErr  error
		wantEnded string
		wantErr   string
	}{
		{"applied and committed", embedded, "", nil, "commit", ""},
		{"failed migration rolled back", embedded, "0001", nil, "rollback", "db: apply migration 1: boom"},
		{"begin fails", embedded, "", errors.New("no connection"), "", "db: begin migration: no connection"},
		{"no migrations directory", fstest.MapFS{"0001_init.sql": {Data: []byte("x")}}, "", nil, "rollback", "db: read migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &fakeCommitter{fakeTx: fakeTx{failOn: tc.failOn}}
			err := Apply(context.Background(), dialect, tc.fsys, func(context.Context) (Committer, error) { return tx, tc.beginErr })
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if tx.ended != tc.wantEnded {
				t.Errorf("transaction ended with %q, want %q", tx.ended, tc.wantEnded)
			}
		})
	}
}
