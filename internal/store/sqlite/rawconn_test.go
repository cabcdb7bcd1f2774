package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
)

// rawRow.Scan converts as database/sql would for the types the store
// scans to, and refuses the rest.
func TestRawRowScan(t *testing.T) {
	blob := []byte("blob")
	fails := errors.New("no conversion")
	for _, tc := range []struct {
		name string
		v    driver.Value
		dest func() any
		want any // what dest points to, or fails
	}{
		{"text to string", "text", func() any { return new(string) }, "text"},
		{"blob to string", blob, func() any { return new(string) }, "blob"},
		{"NULL to string", nil, func() any { return new(string) }, fails},
		{"int to int64", int64(7), func() any { return new(int64) }, int64(7)},
		{"text to int64", "7", func() any { return new(int64) }, fails},
		{"int to bool", int64(1), func() any { return new(bool) }, true},
		{"0 to bool", int64(0), func() any { return new(bool) }, false},
		{"NULL to bool", nil, func() any { return new(bool) }, fails},
		{"blob to []byte", blob, func() any { return new([]byte) }, blob},
		{"text to []byte", "text", func() any { return new([]byte) }, []byte("text")},
		{"NULL to []byte", nil, func() any { return new([]byte) }, []byte(nil)},
		{"blob to any", blob, func() any { return new(any) }, any(blob)},
		{"NULL to any", nil, func() any { return new(any) }, any(nil)},
		{"int to float", int64(1), func() any { return new(float64) }, fails},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.dest()
			err := rawRow{vals: []driver.Value{tc.v}}.Scan(d)
			if tc.want == fails {
				if err == nil {
					t.Fatalf("scanned %#v into %T", tc.v, d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got any
			switch d := d.(type) {
			case *string:
				got = *d
			case *int64:
				got = *d
			case *bool:
				got = *d
			case *[]byte:
				got = *d
			case *any:
				got = *d
			}
			if g, w := got, tc.want; !equalValue(g, w) {
				t.Fatalf("got %#v, want %#v", g, w)
			}
		})
	}
	if err := (rawRow{vals: []driver.Value{int64(1)}}).Scan(new(int64), new(int64)); err == nil {
		t.Error("one column scanned into two destinations")
	}
	if err := (rawRow{err: sql.ErrNoRows}).Scan(new(int64)); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("no row: %v", err)
	}
}

func equalValue(a, b any) bool {
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && string(ab) == string(bb) && (ab == nil) == (bb == nil)
	}
	return a == b
}

// The writer connection replaced by the pool (it went bad) gets the
// statements prepared again, and a transaction a caller left open does
// not reach the next user of the connection.
func TestRawConnSurvivesItsConnection(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	redeem := func(name string) {
		t.Helper()
		c := newCode(t, s, name)
		if _, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); err != nil {
			t.Fatalf("redeem %s: %v", name, err)
		}
		if _, err := s.GetGrant(ctx, c.GrantID); err != nil {
			t.Fatalf("grant of %s: %v", name, err)
		}
	}
	redeem("before")
	old := s.raw.dc
	if err := s.withWriter(ctx, func(*rawConn) error { return driver.ErrBadConn }); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("withWriter: %v", err)
	}
	redeem("after")
	if s.raw.dc == old {
		t.Fatal("the writer connection was not replaced")
	}

	// Left open: rolled back, and the next write commits.
	if err := s.withWriter(ctx, func(c *rawConn) error {
		if err := c.begin(ctx); err != nil {
			return err
		}
		_, err := c.exec(ctx, `DELETE FROM auth_codes`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if s.raw.inTx {
		t.Fatal("a transaction still open")
	}
	var codes int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM auth_codes`).Scan(&codes); err != nil || codes != 2 {
		t.Fatalf("%d codes (%v): the open transaction's DELETE was not rolled back", codes, err)
	}
	redeem("last")
}
