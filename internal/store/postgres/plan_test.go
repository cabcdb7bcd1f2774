package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// Every statement of the refresh path, of revocation, and every sweep
// batch can find its rows through an index, so its cost does not grow with
// the number of stored grants (issue 15: refresh at 100k grants as fast as
// at 1k). The planner is told to avoid sequential scans: one that remains
// means no index serves the statement, as does an index scan without an
// index condition. (On a tiny table the planner would
// rightly prefer a scan, so the plan of the statement as such says nothing.)
func TestQueryPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.SchemaDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	type stmt struct {
		q    string
		args []any
	}
	stmts := []stmt{
		{qGetRefresh, []any{key("k"), now}},
		{qGetRefreshGrant, []any{key("k"), now}},
		{qRotateRefresh, []any{now, "next", key("k"), now, key("next"), key("g"), "g", "c", now, now, nil, ""}},
		{qRefreshLive, []any{key("k"), now}},
		{qRevokeRefresh, []any{key("k")}},
		{qGetGrant, []any{key("k"), now}},
		{qGrantLive, []any{key("k"), now}},
		{qRevokeGrant, []any{key("k")}},
		{qUpdateGrantUpstream, []any{[]byte("{}"), []byte("sealed"), now, key("k"), int64(1), now}},
	}
	for _, q := range sweepQueries {
		stmts = append(stmts, stmt{q, []any{now, sweepBatch}})
	}
	for _, st := range stmts {
		rows, err := conn.Query(ctx, "EXPLAIN "+st.q, st.args...)
		if err != nil {
			t.Fatalf("%.60q: %v", st.q, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatalf("%.60q: %v", st.q, err)
		}
		q, p := strings.Join(strings.Fields(st.q), " "), strings.Join(plan, "\n  ")
		// An index scan without an Index Cond walks the whole index.
		scans := strings.Count(p, "Index Scan using") + strings.Count(p, "Index Only Scan using") +
			strings.Count(p, "Bitmap Index Scan on")
		if strings.Contains(p, "Seq Scan") || scans > strings.Count(p, "Index Cond:") {
			t.Errorf("a scan of a whole table or index in %q:\n  %s", q, p)
		}
		t.Logf("%.90s\n  %s", q, p)
	}
}
