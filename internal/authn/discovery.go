package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// serverMetadata is the part of an OIDC Discovery / RFC 8414 document we use.
type serverMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// discoverer fetches an issuer's metadata once; failed attempts are retried
// after retryWait (a short backoff), so an unreachable IdP is not hammered
// and one that comes back is found within seconds.
type discoverer struct {
	issuer       string
	allowPrivate bool
	client       *http.Client
	now          func() time.Time
	minInterval  time.Duration

	mu          sync.Mutex
	md          *serverMetadata
	lastAttempt time.Time
	lastErr     error
	failures    int
}

func (d *discoverer) get(ctx context.Context) (*serverMetadata, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.md != nil {
		return d.md, nil
	}
	now := d.now()
	if !d.lastAttempt.IsZero() && now.Sub(d.lastAttempt) < retryWait(d.failures, d.minInterval) {
		return nil, d.lastErr
	}
	d.lastAttempt = now
	md, err := discover(ctx, d.client, d.issuer)
	d.md, d.lastErr = md, err
	if err != nil {
		d.failures++
	}
	return md, err
}

// discover tries OIDC Discovery (issuer + /.well-known/openid-configuration,
// OIDC Discovery §4) and then RFC 8414 §3.1 (well-known suffix inserted before
// the issuer's path). The document's issuer must equal ours exactly
// (RFC 8414 §3.3), or a compromised or misconfigured document could make us
// trust another issuer's keys.
func discover(ctx context.Context, client *http.Client, issuer string) (*serverMetadata, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	path := strings.TrimSuffix(u.Path, "/")
	oidc := *u
	oidc.Path = path + "/.well-known/openid-configuration"
	oidc.RawPath = ""
	oauth := *u
	oauth.Path = "/.well-known/oauth-authorization-server" + path
	oauth.RawPath = ""

	var errs []error
	for _, candidate := range []string{oidc.String(), oauth.String()} {
		var md serverMetadata
		if err := getJSON(ctx, client, candidate, &md); err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != issuer {
			errs = append(errs, fmt.Errorf("discovery document %s names issuer %q, want %q", candidate, md.Issuer, issuer))
			continue
		}
		return &md, nil
	}
	return nil, fmt.Errorf("discovery for %s failed: %w", issuer, errors.Join(errs...))
}

// getJSON GETs a JSON document (at most maxBodyBytes) into v.
func getJSON(ctx context.Context, client *http.Client, rawURL string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	return decodeJSONResponse(resp, v)
}

// decodeJSONResponse checks for 200 and a JSON body of bounded size.
func decodeJSONResponse(resp *http.Response, v any) error {
	where := resp.Request.Method + " " + resp.Request.URL.Redacted()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: status %d", where, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return fmt.Errorf("%s: content type %q is not JSON", where, mt)
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if len(body) > maxBodyBytes {
		return fmt.Errorf("%s: response larger than %d bytes", where, maxBodyBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}
