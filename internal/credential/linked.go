package credential

import (
	"context"
	"errors"
	"fmt"
)

// LinkedTokens yields the user's token at a linked provider (an OAuth
// provider besides the sign-in IdP) for a token session. The built-in
// authorization server implements it. When the user has not linked an
// account there yet, or the link broke (the provider would not refresh the
// token), it returns a *LinkRequiredError carrying the URL that links it
// if start is set, and ErrNotLinked otherwise.
type LinkedTokens interface {
	LinkedToken(ctx context.Context, tsid, provider string, start bool) (string, error)
}

// ErrNotLinked: the user has not linked an account at the provider, and
// the request does not act for the user, so no link was started.
var ErrNotLinked = errors.New("the user has not linked an account at the provider")

// LinkRequiredError says that the user must link an account at Provider
// before the backend can be called on their behalf: the client is sent a
// URL-mode elicitation (MCP 2025-11-25, error -32042) with URL.
type LinkRequiredError struct {
	Provider    string // the provider's name in the configuration
	DisplayName string // its name for people
	// URL starts the link in the user's browser. It carries a single-use
	// reference to a pending link bound to the token session; it is not a
	// credential by itself (see docs/linked-accounts.md).
	URL string
	// ElicitationID identifies the elicitation (elicitationId).
	ElicitationID string
}

func (e *LinkRequiredError) Error() string {
	return fmt.Sprintf("the user has not linked a %s account", e.Provider)
}

// Is makes errors.Is(err, ErrNoSubject) true: without the link there is no
// credential for the backend.
func (e *LinkRequiredError) Is(target error) bool { return target == ErrNoSubject }

// linked sends the user's linked token at one provider.
type linked struct {
	l        LinkedTokens
	provider string
}

func (l linked) Get(ctx context.Context, s Subject) (Header, error) {
	if s.Principal == nil || s.Principal.SessionID == "" {
		return Header{}, ErrNoSubject
	}
	tok, err := l.l.LinkedToken(ctx, s.Principal.SessionID, l.provider, s.ActsForUser)
	if err != nil {
		var lr *LinkRequiredError
		if errors.As(err, &lr) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLinked) {
			return Header{}, err
		}
		return Header{}, fmt.Errorf("%w: %w", ErrNoSubject, err)
	}
	return Header{Name: "Authorization", Value: "Bearer " + tok}, nil
}
