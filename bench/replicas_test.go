package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// TestKillReplicaUnderSignInLoad is issue 14's kill -9 acceptance, short:
// two replicas on PostgreSQL behind the round-robin proxy, four workers
// registering, signing in and refreshing for 5 s, replica 0 killed with
// SIGKILL after 2 s. Nothing answered is lost and the load goes on
// through the survivor. The check itself is shown to see a loss: a client
// id that was never committed, and a grant revoked before the check.
func TestKillReplicaUnderSignInLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/mcpgate")
	}
	dsn := pgtest.BaseDSN(t)
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := buildMcpgate(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	tampered := 0
	o := killOptions{Bin: bin, Dir: dir, BaseDSN: dsn, Workers: 4, Duration: 5 * time.Second, KillAfter: 2 * time.Second,
		Refreshes: 2, Progress: io.Discard,
		beforeCheck: func(ctx context.Context, clients []string, grants []*killGrant) []string {
			for _, g := range grants {
				if g.inDoubt {
					continue
				}
				// A grant gone from the store, as a lost commit would be.
				form := url.Values{"token": {g.rt}, "client_id": {g.client.ID}}
				resp, err := http.PostForm(g.client.base+"/revoke", form)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("revoke before the check: %v %v", resp, err)
				}
				resp.Body.Close()
				tampered++
				break
			}
			return append(clients, "never-registered")
		}}
	r, err := runKillLoad(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r.markdown())
	for _, s := range r.Samples {
		t.Log("sample:", s)
	}
	if r.KilledAt == 0 || r.Registrations == 0 || r.SignIns == 0 || r.Refreshes == 0 {
		t.Fatalf("no load or no kill: %+v", r)
	}
	if r.RegistrationsAfter == 0 || r.SignInsAfter == 0 || r.RefreshesAfter == 0 {
		t.Errorf("nothing went on through the survivor after the kill: %+v", r)
	}
	if r.Served[1] <= r.Served[0] {
		t.Errorf("requests per replica %v: the survivor should have served more", r.Served)
	}
	if r.Refused != 0 || r.NoAnswerLate != 0 {
		t.Errorf("%d answers with an error, %d requests unanswered later than 1 s after the kill", r.Refused, r.NoAnswerLate)
	}
	// Exactly the tampered client and grant are reported, nothing else.
	if r.ClientsMissing != 1 || r.GrantsLost != tampered || tampered != 1 {
		t.Errorf("clients missing %d (want the 1 fake), grants lost %d (want the %d revoked)", r.ClientsMissing, r.GrantsLost, tampered)
	}
}
