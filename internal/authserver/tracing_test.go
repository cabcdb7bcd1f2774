package authserver

import (
	"context"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// TestTokenEndpointSpans: each token request is an "authserver.token" span
// with its grant type (and OAuth error), and the store calls it makes are
// its children; no code, token or secret is in any span.
func TestTokenEndpointSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.New(exp)
	telemetry.Install(tr)
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	rec := &traceIDAuditor{}
	e := newEnv(t, envOpt{deps: func(d *Deps) { d.Auditor = rec }})
	c := e.register("http://127.0.0.1:3000/cb", false)
	code := e.code(c)
	exp.Reset() // the login's spans are not the point here
	st, m := e.exchange(c, code, nil)
	if st != 200 {
		t.Fatalf("exchange: %d %v", st, m)
	}
	rt := m["refresh_token"].(string)
	if st, m := e.refresh(c, rt); st != 200 {
		t.Fatalf("refresh: %d %v", st, m)
	}
	if st, _ := e.refresh(c, "not-a-refresh-token"); st != 400 {
		t.Fatalf("bad refresh: %d", st)
	}
	spans := exp.GetSpans().Snapshots()

	// The records of the token requests name their traces.
	rec.mu.Lock()
	issued := rec.ids[audit.EventASTokenIssued]
	rec.mu.Unlock()
	if len(issued) != 1 || issued[0] == "" {
		t.Errorf("AS_TOKEN_ISSUED trace ids %q", issued)
	}

	var tokens []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "authserver.token" {
			tokens = append(tokens, s)
		}
		dump := strings.Join([]string{s.Name(), s.Status().Description, attrString(s.Attributes())}, " ")
		for _, secret := range []string{code, rt, c.Secret, m["access_token"].(string)} {
			if secret != "" && strings.Contains(dump, secret) {
				t.Errorf("span %s carries a secret: %s", s.Name(), dump)
			}
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("%d token spans, want 3", len(tokens))
	}
	want := []struct {
		grant, oauthErr string
		children        []string
	}{
		{"authorization_code", "", []string{"store.RedeemAuthCode"}}, // the client comes from its cache
		{"refresh_token", "", []string{"store.GetRefreshTokenGrant", "store.RotateRefreshToken"}},
		{"refresh_token", "invalid_grant", []string{"store.GetRefreshTokenGrant"}},
	}
	for i, w := range want {
		s := tokens[i]
		if i == 0 && len(issued) == 1 && issued[0] != s.SpanContext().TraceID().String() {
			t.Errorf("AS_TOKEN_ISSUED trace_id %s, token span's trace %s", issued[0], s.SpanContext().TraceID())
		}
		if got := attrOf(s, "oauth.grant_type"); got != w.grant {
			t.Errorf("token span %d: grant_type %q, want %q", i, got, w.grant)
		}
		if got := attrOf(s, "oauth.error"); got != w.oauthErr {
			t.Errorf("token span %d: oauth.error %q, want %q", i, got, w.oauthErr)
		}
		if (w.oauthErr != "") != (s.Status().Code == codes.Error) {
			t.Errorf("token span %d: status %v", i, s.Status())
		}
		children := map[string]bool{}
		for _, c := range spans {
			if c.Parent().SpanID() == s.SpanContext().SpanID() {
				children[c.Name()] = true
			}
		}
		for _, name := range w.children {
			if !children[name] {
				t.Errorf("token span %d (%s): no child %s; children %v", i, w.grant, name, children)
			}
		}
	}
}

// traceIDAuditor keeps the trace id of each record by event.
type traceIDAuditor struct {
	mu  sync.Mutex
	ids map[string][]string
}

func (a *traceIDAuditor) Log(_ context.Context, r *audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = map[string][]string{}
	}
	a.ids[r.Event] = append(a.ids[r.Event], r.TraceID)
	return nil
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func attrString(kvs []attribute.KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + " ")
	}
	return b.String()
}
