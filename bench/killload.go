package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

// The kill load (issue 14): N workers register a client, sign in, and
// refresh in a loop through the round-robin proxy; one replica is killed
// with SIGKILL mid-run. Afterwards nothing the load generator got an
// answer for may be lost: every answered registration is a client in the
// store, and every grant's last answered refresh token refreshes (through
// the survivor). A request no replica answered (in flight at the kill) has
// an unknown outcome: its grant is "in doubt" and not checked, since a
// refresh that committed but whose answer was lost has rotated the token
// the client still holds.

type killOptions struct {
	Bin, Dir, BaseDSN string
	Workers           int
	Duration          time.Duration // whole load
	KillAfter         time.Duration // SIGKILL replica 0 then; 0 = never
	Refreshes         int           // refreshes per sign-in
	Progress          io.Writer
	// beforeCheck, in tests, tampers with what the check is given, to
	// show that it finds a loss.
	beforeCheck func(ctx context.Context, clients []string, grants []*killGrant) []string
}

type killResult struct {
	Workers       int
	Duration      time.Duration
	KilledAt      time.Duration // since the load started; 0 = no kill
	Registrations int           // answered: clients committed
	SignIns       int           // answered code exchanges: grants committed
	Refreshes     int           // answered refreshes
	// After the kill, through the survivor.
	RegistrationsAfter, SignInsAfter, RefreshesAfter int
	NoAnswer                                         int // requests no replica answered (in flight at the kill)
	NoAnswerLate                                     int // … more than a second after the kill
	Refused                                          int // a replica answered with an error
	GrantsInDoubt                                    int
	ClientsChecked, ClientsMissing                   int
	GrantsChecked, GrantsLost                        int
	Served                                           []int64 // requests per replica (the proxy's count)
	Samples                                          []string
}

// ok says whether the run met issue 14's bar.
func (r *killResult) ok() bool {
	return r.Refused == 0 && r.NoAnswerLate == 0 && r.ClientsMissing == 0 && r.GrantsLost == 0 &&
		r.ClientsChecked > 0 && r.GrantsChecked > 0 && (r.KilledAt == 0 || r.SignInsAfter > 0 && r.RefreshesAfter > 0)
}

type killGrant struct {
	client  *oauthClient
	rt      string
	inDoubt bool
}

func runKillLoad(ctx context.Context, o killOptions) (*killResult, error) {
	c, err := startCluster(ctx, clusterOptions{Bin: o.Bin, Dir: o.Dir, BaseDSN: o.BaseDSN, Replicas: 2, Users: 8})
	if err != nil {
		return nil, err
	}
	defer c.close()
	hc := &http.Client{Transport: newClientTransport(o.Workers), Timeout: 15 * time.Second}
	res := &killResult{Workers: o.Workers}
	var (
		mu      sync.Mutex
		clients []string
		grants  []*killGrant
		killed  atomic.Int64 // unix nanos of the kill
		n       atomic.Int64
		stop    atomic.Bool
	)
	afterKill := func() bool { return killed.Load() != 0 }
	note := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, errNoAnswer) {
			res.NoAnswer++
			if k := killed.Load(); k == 0 || time.Since(time.Unix(0, k)) > time.Second {
				res.NoAnswerLate++
			}
		} else {
			res.Refused++
		}
		if len(res.Samples) < 5 {
			res.Samples = append(res.Samples, err.Error())
		}
	}
	count := func(total, after *int) {
		mu.Lock()
		*total++
		if afterKill() {
			*after++
		}
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Workers {
		wg.Go(func() {
			bg := context.WithoutCancel(ctx) // a request in progress finishes; stop is checked between requests
			for !stop.Load() && ctx.Err() == nil {
				i := n.Add(1)
				cl, err := register(bg, hc, c.base, fmt.Sprintf("kill load %d", i))
				if err != nil {
					note(err)
					continue
				}
				mu.Lock()
				clients = append(clients, cl.ID)
				mu.Unlock()
				count(&res.Registrations, &res.RegistrationsAfter)
				tok, err := cl.signIn(bg, c.users[w%len(c.users)], c.password)
				if err != nil {
					note(err)
					continue
				}
				count(&res.SignIns, &res.SignInsAfter)
				g := &killGrant{client: cl, rt: tok.Refresh}
				for range o.Refreshes {
					if stop.Load() {
						break
					}
					t, err := cl.refresh(bg, g.rt)
					if err != nil {
						note(err)
						g.inDoubt = errors.Is(err, errNoAnswer)
						break
					}
					g.rt = t.Refresh
					count(&res.Refreshes, &res.RefreshesAfter)
				}
				mu.Lock()
				grants = append(grants, g)
				mu.Unlock()
			}
		})
	}
	if o.KillAfter > 0 {
		select {
		case <-time.After(o.KillAfter):
		case <-ctx.Done():
		}
		if err := syscall.Kill(c.replicas[0].pid(), syscall.SIGKILL); err != nil {
			stop.Store(true)
			wg.Wait()
			return nil, err
		}
		killed.Store(time.Now().UnixNano())
		res.KilledAt = time.Since(start)
		fmt.Fprintf(o.Progress, "kill -9 replica 0 (pid %d) at %v\n", c.replicas[0].pid(), res.KilledAt.Round(time.Millisecond))
	}
	select {
	case <-time.After(o.Duration - time.Since(start)):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	res.Duration = time.Since(start)
	for i := range c.proxy.served {
		res.Served = append(res.Served, c.proxy.served[i].Load())
	}

	if o.beforeCheck != nil {
		clients = o.beforeCheck(ctx, clients, grants)
	}
	// Every answered registration is in the store.
	st, err := backends.Open(ctx, store.Config{Driver: store.DriverPostgres, DSN: c.dsn}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for _, id := range clients {
		res.ClientsChecked++
		if _, err := st.GetClient(ctx, id); err != nil {
			res.ClientsMissing++
			if len(res.Samples) < 10 {
				res.Samples = append(res.Samples, fmt.Sprintf("client %s: %v", id, err))
			}
		}
	}
	// Every grant's last answered refresh token still refreshes, through
	// whatever replica is left.
	work := make(chan *killGrant)
	var lost atomic.Int64
	var wg2 sync.WaitGroup
	for range o.Workers {
		wg2.Go(func() {
			for g := range work {
				if _, err := g.client.refresh(ctx, g.rt); err != nil {
					lost.Add(1)
					mu.Lock()
					if len(res.Samples) < 10 {
						res.Samples = append(res.Samples, "final refresh: "+err.Error())
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, g := range grants {
		if g.inDoubt {
			res.GrantsInDoubt++
			continue
		}
		res.GrantsChecked++
		work <- g
	}
	close(work)
	wg2.Wait()
	res.GrantsLost = int(lost.Load())
	return res, nil
}

func (r *killResult) markdown() string {
	kill := "no kill"
	if r.KilledAt > 0 {
		kill = fmt.Sprintf("replica 0 killed (SIGKILL) at %.1f s", r.KilledAt.Seconds())
	}
	return fmt.Sprintf(`| | |
|---|---|
| load | %d workers, %.1f s, %s |
| answered registrations (clients committed) | %d (%d after the kill) |
| answered sign-ins (grants committed) | %d (%d after the kill) |
| answered refreshes | %d (%d after the kill) |
| requests per replica (proxy) | %v |
| requests no replica answered (in flight at the kill) | %d (%d later than 1 s after it) |
| answers with an error | %d |
| clients checked in the store / missing | %d / %d |
| grants whose last answered refresh token was used again / lost | %d / %d (%d in doubt, not checked) |
`, r.Workers, r.Duration.Seconds(), kill, r.Registrations, r.RegistrationsAfter, r.SignIns, r.SignInsAfter,
		r.Refreshes, r.RefreshesAfter, r.Served, r.NoAnswer, r.NoAnswerLate, r.Refused,
		r.ClientsChecked, r.ClientsMissing, r.GrantsChecked, r.GrantsLost, r.GrantsInDoubt)
}
