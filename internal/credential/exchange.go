package credential

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/netguard"
)

// RFC 8693 §2.1 and RFC 7523 §2.1 grant types, and the Entra on-behalf-of
// request parameter.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Bounds on what the security token service answers.
const (
	// maxResponseBytes bounds a token response body; a larger one is an
	// error, not a truncated token.
	maxResponseBytes = 64 << 10
	// maxTokenBytes bounds an issued access token (it becomes a header).
	maxTokenBytes = 16 << 10
	// maxLifetime bounds expires_in (RFC 6749 §5.1): beyond a day a
	// "short-lived" backend token is a misconfiguration or garbage.
	maxLifetime = 24 * time.Hour
	// assumedLifetime is how long a token without expires_in is cached.
	assumedLifetime = 5 * time.Minute
	// refreshBefore: a cached credential is replaced this long before it
	// expires, so a backend never receives one that expires in transit. A
	// token living no longer than this is used for one call, not cached.
	refreshBefore = 30 * time.Second
)

// exchanger obtains tokens from a security token service: RFC 8693 token
// exchange, Entra on-behalf-of, or client credentials.
type exchanger struct {
	cfg      Config
	o        Options
	kind     string // audit method: token_exchange, on_behalf_of, client_credentials
	client   *http.Client
	signer   *assertionSigner // client_auth private_key_jwt
	cache    *cache
	flights  singleflight.Group
	ctr      counters
	scope    string
	subjType string // RFC 8693 §3 URI
	reqType  string // RFC 8693 §3 URI
	// endpoint is the token endpoint: configured, or discovered once.
	endpointMu sync.Mutex
	endpoint   string
}

func newExchanger(cfg Config, o Options) (*exchanger, error) {
	x := &exchanger{cfg: cfg, o: o, kind: cfg.Type, cache: newCache(cfg.CacheSize), scope: strings.Join(cfg.Scopes, " "),
		subjType: tokenTypes[cfg.SubjectTokenType], reqType: tokenTypes[cfg.RequestedTokenType], endpoint: cfg.TokenEndpoint}
	if cfg.Type == TypeTokenExchange {
		if cfg.Protocol == ProtocolOnBehalfOf {
			x.kind = ProtocolOnBehalfOf
		}
		switch o.Subject {
		case SubjectUpstream:
			if o.Upstream == nil {
				return nil, errors.New("credential token_exchange: no upstream token store")
			}
		case SubjectIncoming:
		default:
			return nil, errors.New("credential token_exchange needs the user's token: auth.mode authorization_server, jwt or introspection")
		}
	}
	if o.Auditor == nil {
		return nil, fmt.Errorf("credential %s: no audit logger", cfg.Type)
	}
	if cfg.ClientAuth == AuthPrivateKeyJWT {
		s, err := newAssertionSigner(cfg.PrivateKeyFile, cfg.KeyID)
		if err != nil {
			return nil, fmt.Errorf("credential private_key_file: %w", err)
		}
		x.signer = s
	}
	// The IdP client's SSRF guard: no redirects, no proxy from the
	// environment, public addresses only unless allowed, a whole-request
	// timeout; and a bound on the body read.
	x.client = netguard.GuardedClient(o.HTTPClient, cfg.AllowPrivateNetwork, cfg.Timeout)
	x.client.Transport = limitedBody{x.client.Transport}
	x.ctr = o.Metrics.forBackend(o.Backend, x.kind)
	return x, nil
}

// Get implements Provider: a cached credential, or one request to the
// security token service per key at a time (concurrent callers share its
// outcome).
func (x *exchanger) Get(ctx context.Context, s Subject) (Header, error) {
	key, err := x.key(s)
	if err != nil {
		return Header{}, err
	}
	if h, ok := x.cache.get(key, x.o.Now()); ok {
		inc(x.ctr.hit)
		return h, nil
	}
	return x.miss(ctx, s, key)
}

// miss joins or starts the request for key. (Apart from Get, so that what
// the flight captures is allocated on a miss only.)
func (x *exchanger) miss(ctx context.Context, s Subject, key cacheKey) (Header, error) {
	led := false // set (before the result is sent) only in the caller whose function runs
	ch := x.flights.DoChan(string(key[:]), func() (any, error) {
		led = true
		// The flight serves every waiter: it outlives the caller that
		// started it, bounded by its own deadline.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*x.cfg.Timeout)
		defer cancel()
		return x.obtain(fctx, s, key)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Header{}, r.Err
		}
		if !led {
			inc(x.ctr.hit) // served by another caller's request
		}
		return r.Val.(Header), nil
	case <-ctx.Done():
		return Header{}, ctx.Err()
	}
}

// key is the cache key: the backend is implicit (one exchanger per
// backend). In authorization_server mode it is the token session, whose
// random id names one grant of one user; in jwt mode the presented token,
// which names its user and whose scopes and client may differ between a
// user's tokens. A service token has one key. Hashing the string in place
// keeps the hit path free of allocations.
func (x *exchanger) key(s Subject) (cacheKey, error) {
	if x.cfg.Type == TypeClientCredentials {
		return cacheKey{}, nil
	}
	var id string
	switch {
	case s.Principal == nil:
	case x.o.Subject == SubjectUpstream:
		id = s.Principal.SessionID
	default:
		id = s.Token
	}
	if id == "" {
		return cacheKey{}, ErrNoSubject
	}
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(id), len(id))), nil
}

// obtain runs one request to the security token service, audits it and
// caches its result.
func (x *exchanger) obtain(ctx context.Context, s Subject, key cacheKey) (Header, error) {
	now := x.o.Now()
	if h, ok := x.cache.get(key, now); ok { // stored by the flight that just ended
		inc(x.ctr.hit)
		return h, nil
	}
	start := time.Now()
	tok, lifetime, err := x.request(ctx, s)
	rec := x.record(s, time.Since(start))
	if err != nil {
		inc(x.ctr.failed)
		rec.Result, rec.Reason = audit.ResultError, bounded(err.Error(), 512)
		x.o.Logger.WarnContext(ctx, "backend credential request failed", "backend", x.o.Backend, "type", x.kind, "reason", rec.Reason)
		_ = x.o.Auditor.Log(ctx, rec) // a refusal is recorded best effort
		return Header{}, err
	}
	rec.Result = audit.ResultSuccess
	rec.Reason = fmt.Sprintf("issued for %s, expires in %s", x.o.Backend, lifetime.Round(time.Second))
	// What is handed to a backend is recorded first, or not handed out.
	if err := x.o.Auditor.Log(ctx, rec); err != nil {
		inc(x.ctr.failed)
		return Header{}, fmt.Errorf("%w: audit log unavailable", ErrUnavailable)
	}
	inc(x.ctr.exchanged)
	h := Header{Name: "Authorization", Value: "Bearer " + tok}
	refresh := now.Add(lifetime - refreshBefore)
	if p := s.Principal; x.o.Subject == SubjectIncoming && p != nil && !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(refresh) {
		refresh = p.ExpiresAt // the entry is keyed by a token that is no longer accepted after then
	}
	x.cache.put(key, h, refresh, now)
	return h, nil
}

// record is the audit record of one request, without a token value.
func (x *exchanger) record(s Subject, d time.Duration) *audit.Record {
	rec := &audit.Record{Event: audit.EventBackendCredential, Backend: x.o.Backend, Method: x.kind, DurationMS: audit.Millis(d),
		Resource: x.target()}
	if p := s.Principal; p != nil {
		rec.Issuer, rec.Subject, rec.User, rec.Username, rec.Email = p.Issuer, p.Subject, p.DisplayName(), p.Username, p.Email
		rec.Groups, rec.ClientID, rec.TokenID, rec.SessionID = p.Groups, p.ClientID, p.TokenID, p.SessionID
	}
	return rec
}

// target names what the token is for: audience, resource or scope.
func (x *exchanger) target() string {
	switch {
	case x.cfg.Audience != "":
		return x.cfg.Audience
	case x.cfg.Resource != "":
		return x.cfg.Resource
	}
	return x.scope
}

// request asks the security token service for a token. Its errors name
// the kind of failure and the service's OAuth error code, never its
// error_description or a token: they go to the log and the audit record.
func (x *exchanger) request(ctx context.Context, s Subject) (tok string, lifetime time.Duration, err error) {
	endpoint, err := x.tokenEndpoint(ctx)
	if err != nil {
		return "", 0, err
	}
	if x.cfg.Type == TypeClientCredentials {
		return x.clientCredentials(ctx, endpoint)
	}
	subject, err := x.subjectToken(ctx, s)
	if err != nil {
		return "", 0, err
	}
	form := url.Values{}
	if x.kind == ProtocolOnBehalfOf {
		// Microsoft identity platform on-behalf-of flow: the user's token
		// is the assertion of a jwt-bearer grant (RFC 7523 §2.1).
		form.Set("grant_type", grantJWTBearer)
		form.Set("assertion", subject)
		form.Set("requested_token_use", "on_behalf_of")
	} else {
		// RFC 8693 §2.1.
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", subject)
		form.Set("subject_token_type", x.subjType)
		form.Set("requested_token_type", x.reqType)
		if x.cfg.Audience != "" {
			form.Set("audience", x.cfg.Audience)
		}
		if x.cfg.Resource != "" {
			form.Set("resource", x.cfg.Resource)
		}
	}
	if x.scope != "" {
		form.Set("scope", x.scope)
	}
	if err := x.authenticate(form, endpoint); err != nil {
		return "", 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if x.cfg.ClientAuth == AuthClientSecretBasic {
		// RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(x.cfg.ClientID), url.QueryEscape(x.cfg.ClientSecret))
	}
	resp, err := x.client.Do(req)
	if err != nil {
		return "", 0, transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, oauthError(resp.StatusCode, body)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return "", 0, fmt.Errorf("%w: token response is not application/json", ErrUnavailable)
	}
	return x.parse(body)
}

// subjectToken is the user's token to exchange.
func (x *exchanger) subjectToken(ctx context.Context, s Subject) (string, error) {
	if x.o.Subject == SubjectIncoming {
		if s.Token == "" {
			return "", ErrNoSubject
		}
		return s.Token, nil
	}
	if s.Principal == nil || s.Principal.SessionID == "" {
		return "", ErrNoSubject
	}
	tok, err := x.o.Upstream.UpstreamToken(ctx, s.Principal.SessionID)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoSubject, err)
	}
	return tok, nil
}

// tokenResponse is the successful answer (RFC 6749 §5.1, RFC 8693 §2.2.1).
type tokenResponse struct {
	AccessToken     string      `json:"access_token"`
	IssuedTokenType string      `json:"issued_token_type"`
	TokenType       string      `json:"token_type"`
	ExpiresIn       json.Number `json:"expires_in"`
}

// parse checks a token response strictly: a usable bearer access token of
// the requested type with a bounded lifetime.
func (x *exchanger) parse(body []byte) (string, time.Duration, error) {
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return "", 0, fmt.Errorf("%w: token response is not a JSON object", ErrUnavailable)
	}
	if x.kind == TypeTokenExchange {
		// RFC 8693 §2.2.1: issued_token_type is required. An access
		// token may come as a JWT; anything else (an ID token, a refresh
		// token, SAML) is not a credential for a backend.
		if r.IssuedTokenType != x.reqType && (x.reqType != tokenTypes["access_token"] || r.IssuedTokenType != tokenTypes["jwt"]) {
			return "", 0, fmt.Errorf("%w: issued_token_type %q is not the requested one", ErrUnavailable, bounded(r.IssuedTokenType, 64))
		}
	}
	return checkToken(r.AccessToken, r.TokenType, string(r.ExpiresIn))
}

// checkToken validates the fields every token response shares and returns
// the token and its lifetime.
func checkToken(token, tokenType, expiresIn string) (string, time.Duration, error) {
	switch {
	case token == "":
		return "", 0, fmt.Errorf("%w: token response has no access_token", ErrUnavailable)
	case len(token) > maxTokenBytes || !authn.IsB64Token(token):
		return "", 0, fmt.Errorf("%w: access_token is not a bearer token (RFC 6750 §2.1)", ErrUnavailable)
	case !strings.EqualFold(tokenType, "Bearer"):
		// Sent as "Authorization: Bearer": an N_A, DPoP or missing type
		// would be misused.
		return "", 0, fmt.Errorf("%w: token_type %q is not Bearer", ErrUnavailable, bounded(tokenType, 64))
	}
	if expiresIn == "" || expiresIn == "0" {
		return token, assumedLifetime, nil
	}
	n, err := strconv.ParseInt(expiresIn, 10, 64)
	if err != nil || n < 1 || n > int64(maxLifetime/time.Second) {
		return "", 0, fmt.Errorf("%w: expires_in %q out of bounds", ErrUnavailable, bounded(expiresIn, 64))
	}
	return token, time.Duration(n) * time.Second, nil
}

// refusedCodes are the OAuth error codes that concern the user or the
// request for this user, not the gateway's configuration or the service's
// health: the client is told the credential was refused (403).
var refusedCodes = map[string]bool{
	"invalid_grant": true, "invalid_target": true, "invalid_scope": true, "access_denied": true,
	"consent_required": true, "interaction_required": true, "login_required": true,
}

// oauthError classifies an error response (RFC 6749 §5.2).
func oauthError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	code := sanitizeCode(e.Error)
	if status >= 400 && status < 500 && refusedCodes[code] {
		return &stsError{kind: ErrRefused, code: code, status: status}
	}
	return &stsError{kind: ErrUnavailable, code: code, status: status}
}

// stsError is an error answer of the security token service.
type stsError struct {
	kind   error
	code   string
	status int
}

func (e *stsError) Error() string {
	if e.code == "" {
		return fmt.Sprintf("%v (HTTP %d)", e.kind, e.status)
	}
	return fmt.Sprintf("%v: %s (HTTP %d)", e.kind, e.code, e.status)
}
func (e *stsError) Unwrap() error { return e.kind }

// sanitizeCode keeps an error code that has the RFC 6749 §5.2 syntax and a
// sane length; anything else is not repeated in logs or audit.
func sanitizeCode(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return s
}

func transportError(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	if errors.Is(err, errBodyTooLarge) {
		return fmt.Errorf("%w: token response larger than %d bytes", ErrUnavailable, maxResponseBytes)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// bounded shortens a value for an error or a record.
func bounded(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// authenticate adds the client authentication parameters that go in the
// form (RFC 6749 §2.3.1 client_secret_post, RFC 7523 §2.2).
func (x *exchanger) authenticate(form url.Values, endpoint string) error {
	switch x.cfg.ClientAuth {
	case AuthClientSecretPost:
		form.Set("client_id", x.cfg.ClientID)
		form.Set("client_secret", x.cfg.ClientSecret)
	case AuthPrivateKeyJWT:
		a, err := x.signer.sign(x.cfg.ClientID, endpoint, x.o.Now())
		if err != nil {
			return fmt.Errorf("%w: sign client assertion: %v", ErrUnavailable, err)
		}
		form.Set("client_id", x.cfg.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", a)
	}
	return nil
}

// clientCredentials gets the service account's token (RFC 6749 §4.4)
// through golang.org/x/oauth2, on the guarded, bounded client.
func (x *exchanger) clientCredentials(ctx context.Context, endpoint string) (string, time.Duration, error) {
	cc := clientcredentials.Config{ClientID: x.cfg.ClientID, ClientSecret: x.cfg.ClientSecret, TokenURL: endpoint,
		Scopes: x.cfg.Scopes, EndpointParams: url.Values{}, AuthStyle: oauth2.AuthStyleInHeader}
	if x.cfg.Audience != "" {
		cc.EndpointParams.Set("audience", x.cfg.Audience)
	}
	if x.cfg.Resource != "" {
		cc.EndpointParams.Set("resource", x.cfg.Resource)
	}
	if x.cfg.ClientAuth != AuthClientSecretBasic {
		cc.AuthStyle = oauth2.AuthStyleInParams
		form := url.Values{}
		if err := x.authenticate(form, endpoint); err != nil {
			return "", 0, err
		}
		for k, v := range form {
			if k != "client_id" && k != "client_secret" { // x/oauth2 sends those itself
				cc.EndpointParams[k] = v
			}
		}
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, x.client))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return "", 0, oauthError(re.Response.StatusCode, re.Body)
		}
		return "", 0, transportError(err)
	}
	// x/oauth2 turns expires_in into Expiry (against the wall clock).
	expiresIn := ""
	if !tok.Expiry.IsZero() {
		expiresIn = strconv.FormatInt(int64(time.Until(tok.Expiry).Round(time.Second)/time.Second), 10)
	}
	return checkToken(tok.AccessToken, tok.TokenType, expiresIn)
}

// tokenEndpoint returns the configured token endpoint, or discovers the
// issuer's once (OpenID Connect Discovery 1.0 §4; the issuer must match).
// A failed discovery is retried on the next call.
func (x *exchanger) tokenEndpoint(ctx context.Context) (string, error) {
	x.endpointMu.Lock()
	defer x.endpointMu.Unlock()
	if x.endpoint != "" {
		return x.endpoint, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, x.client), x.cfg.Issuer)
	if err != nil {
		return "", transportError(fmt.Errorf("discovery of %s: %w", x.cfg.Issuer, err))
	}
	ep := p.Endpoint().TokenURL
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && x.cfg.AllowPrivateNetwork) {
		return "", fmt.Errorf("%w: discovered token endpoint %q is not an https URL", ErrUnavailable, bounded(ep, 256))
	}
	x.endpoint = ep
	return ep, nil
}

// errBodyTooLarge: a response body past maxResponseBytes.
var errBodyTooLarge = errors.New("response body too large")

// limitedBody bounds every response body read from the security token
// service: reading past maxResponseBytes is an error, never a silently
// truncated token.
type limitedBody struct{ rt http.RoundTripper }

func (l limitedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxResponseBytes {
		resp.Body.Close()
		return nil, errBodyTooLarge
	}
	resp.Body = &capReader{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

type capReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more than allowed means the body is too large.
		var one [1]byte
		n, err := c.rc.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capReader) Close() error { return c.rc.Close() }
