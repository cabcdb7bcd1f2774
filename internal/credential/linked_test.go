package credential

import (
	"context"
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
)

type linkedFunc func(ctx context.Context, tsid, provider string, start bool) (string, error)

func (f linkedFunc) LinkedToken(ctx context.Context, tsid, provider string, start bool) (string, error) {
	return f(ctx, tsid, provider, start)
}

// TestLinkedProvider: linked_token asks the authorization server for the
// session's token at its provider, starting a link only for requests that
// act for the user, and passes link requests, "not linked" and outages on
// as such; anything else means there is no user token.
func TestLinkedProvider(t *testing.T) {
	if _, err := New(Config{Type: TypeLinkedToken, Provider: "gh"}, Options{Backend: "b"}); err == nil {
		t.Error("linked_token without an authorization server: no error")
	}
	var fail error
	var gotStart bool
	p, err := New(Config{Type: TypeLinkedToken, Provider: "gh"}, Options{Backend: "b", Linked: linkedFunc(func(_ context.Context, tsid, provider string, start bool) (string, error) {
		if tsid != "tsid-1" || provider != "gh" {
			t.Errorf("asked for %q %q", tsid, provider)
		}
		gotStart = start
		return "gh-token", fail
	})})
	if err != nil {
		t.Fatal(err)
	}
	alice := &identity.Principal{Subject: "alice", SessionID: "tsid-1"}
	h, err := p.Get(t.Context(), Subject{Principal: alice, ActsForUser: true})
	if err != nil || h != (Header{Name: "Authorization", Value: "Bearer gh-token"}) || !gotStart {
		t.Errorf("linked: %+v %v start=%v", h, err, gotStart)
	}
	if _, err := p.Get(t.Context(), Subject{Principal: &identity.Principal{Subject: "bob"}}); !errors.Is(err, ErrNoSubject) {
		t.Errorf("no token session: %v", err)
	}
	link := &LinkRequiredError{Provider: "gh", URL: "https://gw/link/gh?id=x"}
	for _, tc := range []struct {
		fail  error
		check func(error) bool
	}{
		{link, func(err error) bool {
			var lr *LinkRequiredError
			return errors.As(err, &lr) && lr == link && errors.Is(err, ErrNoSubject)
		}},
		{ErrNotLinked, func(err error) bool { return errors.Is(err, ErrNotLinked) }},
		{ErrUnavailable, func(err error) bool { return errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNoSubject) }},
		{errors.New("session ended"), func(err error) bool { return errors.Is(err, ErrNoSubject) }},
	} {
		fail = tc.fail
		if _, err := p.Get(t.Context(), Subject{Principal: alice}); !tc.check(err) {
			t.Errorf("provider error %v: Get error %v", tc.fail, err)
		}
		if gotStart {
			t.Error("start set for a request that does not act for the user")
		}
	}
}
