package authserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/flight"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/store"
)

// cimdFetcher resolves Client ID Metadata Documents: a client_id that is an
// https URL names a JSON document describing the client
// (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25).
type cimdFetcher struct {
	client  *http.Client
	cfg     CIMDConfig
	trusted []string
	now     func() time.Time
	// flight shares one fetch per URL among the callers that want it.
	flight flight.Group[*store.Client]
	// observe, when set, is told of every fetch (not of cache hits).
	observe func(ctx context.Context, id string, c *store.Client, err error)

	// fetching holds a token per fetch in flight (max_concurrent_fetches).
	fetching chan struct{}

	mu    sync.Mutex
	cache map[string]cimdEntry // documents, and failures (negative_cache_ttl)
}

// cimdEntry is a cached document or, with err set, a cached failure.
type cimdEntry struct {
	client  *store.Client
	err     error
	expires time.Time
}

// errCIMDBusy refuses a fetch beyond max_concurrent_fetches: an attacker
// naming slow document URLs must not tie up the server's outbound calls.
var errCIMDBusy = errors.New("too many client ID metadata documents are being fetched; try again shortly")

const cimdMaxCacheEntries = 10000

// newCIMDFetcher builds the fetcher. Documents come from any https URL a
// client names, so every fetch is SSRF-guarded at dial time, except for the
// operator's cimd.allowed_hosts (or everything with the test-only
// allow_private).
func newCIMDFetcher(cfg CIMDConfig, trusted []string, base *http.Client, now func() time.Time) (*cimdFetcher, error) {
	f := &cimdFetcher{cfg: cfg, trusted: trusted, now: now, cache: map[string]cimdEntry{},
		fetching: make(chan struct{}, cfg.MaxConcurrentFetches)}
	if cfg.AllowPrivate {
		f.client = netguard.GuardedClient(base, true, cfg.Timeout)
		return f, nil
	}
	hosts, err := netguard.ParseHostList(cfg.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("cimd.allowed_hosts: %w", err)
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		if roots, err = loadCAFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("cimd.ca_file: %w", err)
		}
	}
	f.client = netguard.GuardedClientExcept(base, cfg.Timeout, hosts, roots)
	return f, nil
}

// CIMD failures, told apart so the error page can say what happened
// without showing internals (the detail goes to the log).
var (
	// errCIMDUnreachable: the document could not be fetched (no egress,
	// DNS, TLS, timeout, a refused address, a non-200 answer).
	errCIMDUnreachable = errors.New("client metadata document could not be fetched")
	// errCIMDInvalid: the URL or the document breaks the rules.
	errCIMDInvalid = errors.New("client metadata document is not valid")
)

// cimdDocument is the subset of RFC 7591 client metadata we use.
type cimdDocument struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
	ApplicationType         string   `json:"application_type"`
	ClientSecret            string   `json:"client_secret"`
}

// validateCIMDURL checks the client_id URL rules: https, a host, a path
// other than "/", no fragment, no user info, no dot segments.
func validateCIMDURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("client_id URL must be an absolute https URL")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil {
		return nil, errors.New("client_id URL must not contain a fragment or user info")
	}
	if u.Path == "" || u.Path == "/" {
		return nil, errors.New("client_id URL must have a path")
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, errors.New("client_id URL must not contain dot segments")
		}
	}
	return u, nil
}

// cached returns the cached document or failure of id; (nil, nil) when
// there is none.
func (f *cimdFetcher) cached(id string) (*store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.cache[id]
	if !ok {
		return nil, nil
	}
	if !f.now().Before(e.expires) {
		delete(f.cache, id)
		return nil, nil
	}
	if e.err != nil {
		return nil, e.err
	}
	c := *e.client
	return &c, nil
}

// store caches a document (c) or a failure (err) for ttl.
func (f *cimdFetcher) store(id string, c *store.Client, err error, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= cimdMaxCacheEntries {
		now := f.now()
		for k, e := range f.cache {
			if !now.Before(e.expires) {
				delete(f.cache, k)
			}
		}
		if len(f.cache) >= cimdMaxCacheEntries {
			clear(f.cache) // bounded memory beats a perfect cache
		}
	}
	f.cache[id] = cimdEntry{client: c, err: err, expires: f.now().Add(ttl)}
}

// get returns the client a metadata document describes, from cache when
// its HTTP caching lifetime allows. Concurrent requests for one URL share
// a single fetch; a failed fetch is remembered for negative_cache_ttl, and
// at most max_concurrent_fetches run at once (more get errCIMDBusy).
func (f *cimdFetcher) get(ctx context.Context, id string) (*store.Client, error) {
	if c, err := f.cached(id); c != nil || err != nil {
		return c, err
	}
	c, err := f.flight.Do(ctx, id, func(ctx context.Context) (*store.Client, error) {
		return f.fetchAndCache(ctx, id)
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil, fmt.Errorf("%w: %w", errCIMDUnreachable, err) // the caller gave up
	}
	return c, err
}

// fetchAndCache fetches a document and caches the outcome; get's flight runs
// it apart from the callers' contexts, bounded by cimd.timeout, so a failure
// is the document's and is cached (negative_cache_ttl).
func (f *cimdFetcher) fetchAndCache(ctx context.Context, id string) (*store.Client, error) {
	// A fetch that ended since the caller looked may have cached the outcome.
	if c, err := f.cached(id); c != nil || err != nil {
		return c, err
	}
	select {
	case f.fetching <- struct{}{}:
	default:
		return nil, errCIMDBusy
	}
	c, ttl, err := f.fetch(ctx, id)
	<-f.fetching
	if f.observe != nil {
		f.observe(ctx, id, c, err)
	}
	if err != nil {
		f.store(id, nil, fmt.Errorf("%w (cached failure)", err), f.cfg.NegativeCacheTTL)
		return nil, err
	}
	f.store(id, c, nil, ttl)
	return c, nil
}

func (f *cimdFetcher) fetch(ctx context.Context, id string) (*store.Client, time.Duration, error) {
	u, err := validateCIMDURL(id)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errCIMDInvalid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errCIMDInvalid, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errCIMDUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%w: status %d", errCIMDUnreachable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read: %w", errCIMDUnreachable, err)
	}
	if int64(len(body)) > f.cfg.MaxBytes {
		return nil, 0, fmt.Errorf("%w: document larger than %d bytes", errCIMDInvalid, f.cfg.MaxBytes)
	}
	// The raw document is stored as the client's metadata: refuse member
	// names that another parser could read differently (a second client_id,
	// or "CLIENT_ID", which encoding/json also takes as client_id).
	if err := mcp.ValidateJSON(body); err != nil {
		return nil, 0, fmt.Errorf("%w: not JSON: %w", errCIMDInvalid, err)
	}
	var doc cimdDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, 0, fmt.Errorf("%w: not JSON: %w", errCIMDInvalid, err)
	}
	c, err := f.validate(id, &doc)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errCIMDInvalid, err)
	}
	c.Metadata = body
	c.CreatedAt = f.now()
	return c, f.ttl(resp.Header), nil
}

func (f *cimdFetcher) validate(id string, doc *cimdDocument) (*store.Client, error) {
	// The document must describe itself: otherwise any URL could claim to
	// be any client.
	if doc.ClientID != id {
		return nil, errors.New("document client_id does not equal its URL")
	}
	// client_name is optional (RFC 7591 §2; Claude Code sends none): the
	// consent page then names the client by its document's host.
	name := cleanName(doc.ClientName)
	if len(doc.RedirectURIs) == 0 {
		return nil, errors.New("document lacks redirect_uris")
	}
	for _, r := range doc.RedirectURIs {
		if err := validateRedirectURI(r, f.trusted); err != nil {
			return nil, err
		}
	}
	// A public document cannot hold a secret; we do not support
	// private_key_jwt, so these clients are public.
	if doc.ClientSecret != "" {
		return nil, errors.New("document must not contain client_secret")
	}
	if m := doc.TokenEndpointAuthMethod; m != "" && m != authNone {
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported for metadata document clients", m)
	}
	grants := doc.GrantTypes
	if len(grants) == 0 {
		grants = []string{grantCode, grantRT}
	}
	for _, g := range grants {
		if g != grantCode && g != grantRT {
			return nil, fmt.Errorf("grant type %q is not supported", g)
		}
	}
	if len(doc.ResponseTypes) > 0 && !slices.Equal(doc.ResponseTypes, []string{"code"}) {
		return nil, errors.New("only response type code is supported")
	}
	return &store.Client{
		ID:                      id,
		Name:                    name,
		RedirectURIs:            doc.RedirectURIs,
		GrantTypes:              grants,
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: authNone,
		Scope:                   doc.Scope,
		ApplicationType:         doc.ApplicationType,
		Kind:                    store.ClientKindCIMD,
	}, nil
}

// ttl honours Cache-Control (RFC 9111 §5.2.2): no-store/no-cache disable
// caching, max-age sets the lifetime (capped), else the configured default.
func (f *cimdFetcher) ttl(h http.Header) time.Duration {
	ttl := f.cfg.CacheTTL
	for _, cc := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(cc, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return 0
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(d, "max-age="), `"`))
				if err != nil || n < 0 {
					return 0
				}
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	return min(ttl, f.cfg.MaxCacheTTL)
}

// cleanName trims a client-supplied display name and drops control
// characters; it is shown on the consent page (escaped by html/template).
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return -1 // control and bidi-override characters could disguise the name
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 100 {
		s = string(r[:100])
	}
	return s
}

// cimdHost is the host of a metadata document URL as shown to users: in
// punycode (an internationalised name could imitate another), without
// the port unless it is not 443. "" if id is not a URL.
func cimdHost(id string) string {
	u, err := url.Parse(id)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	return asciiHost(strings.TrimSuffix(u.Host, ":443"))
}
