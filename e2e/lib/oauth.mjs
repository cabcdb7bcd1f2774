// OAuth 2.1 client operations against the e2e IdP (or any OIDC provider): discovery, an
// authorization code flow with PKCE driven headlessly, client credentials and refresh.

import crypto from 'node:crypto';
import { CookieJar } from './cookies.mjs';
import { followAuthorization } from './forms.mjs';

/** Fetches OpenID Provider metadata and checks its issuer (OIDC Discovery §4.3). */
export async function discover(issuer) {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`discovery ${url}: HTTP ${res.status}`);
  const meta = await res.json();
  if (meta.issuer !== issuer) throw new Error(`discovery: issuer ${meta.issuer} does not match ${issuer}`);
  return meta;
}

/** A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2). */
export function pkcePair() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function clientAuth(headers, body, clientId, clientSecret) {
  if (clientSecret) {
    // client_secret_basic: form-urlencode both parts first (RFC 6749 §2.3.1).
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
  } else {
    body.set('client_id', clientId);
  }
}

async function tokenRequest(tokenEndpoint, body, { clientId, clientSecret }) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  clientAuth(headers, body, clientId, clientSecret);
  const res = await fetch(tokenEndpoint, { method: 'POST', headers, body });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`token endpoint: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  if (!res.ok) {
    const err = new Error(`token endpoint: HTTP ${res.status} ${json.error ?? ''}: ${json.error_description ?? ''}`);
    err.status = res.status;
    err.oauthError = json.error;
    throw err;
  }
  return json;
}

function addResources(params, resource) {
  for (const r of [resource ?? []].flat()) params.append('resource', r);
}

/**
 * Runs an authorization code flow with PKCE for `user`, submitting the IdP's login form over plain
 * HTTP, and returns the token response (access_token, refresh_token, id_token, …).
 * @param {{issuer: string, user: string, password?: string, resource?: string|string[], scope?: string,
 *   clientId?: string, clientSecret?: string, redirectUri?: string, prompt?: string, log?: (m: string) => void}} o
 */
export async function getUserToken(o) {
  const meta = await discover(o.issuer);
  const clientId = o.clientId ?? 'e2e-cli';
  const redirectUri = o.redirectUri ?? 'http://127.0.0.1/cb';
  const { verifier, challenge } = pkcePair();
  const state = crypto.randomBytes(16).toString('base64url');
  const nonce = crypto.randomBytes(16).toString('base64url');
  const authz = new URL(meta.authorization_endpoint);
  const q = authz.searchParams;
  q.set('response_type', 'code');
  q.set('client_id', clientId);
  q.set('redirect_uri', redirectUri);
  q.set('scope', o.scope ?? 'openid profile email groups');
  q.set('state', state);
  q.set('nonce', nonce);
  q.set('code_challenge', challenge);
  q.set('code_challenge_method', 'S256');
  if (o.prompt) q.set('prompt', o.prompt);
  addResources(q, o.resource);

  const final = await followAuthorization(authz, {
    jar: new CookieJar(),
    redirectUri,
    username: o.user,
    password: o.password ?? `${o.user}-pw`,
    log: o.log,
  });
  const p = final.searchParams;
  if (p.get('error')) throw new Error(`authorization failed: ${p.get('error')}: ${p.get('error_description') ?? ''}`);
  if (p.get('state') !== state) throw new Error('authorization response: state mismatch');
  // RFC 9207: when the server sends iss, it must be the issuer we started with.
  if (p.has('iss') && p.get('iss') !== meta.issuer) throw new Error(`authorization response: iss ${p.get('iss')} is not ${meta.issuer}`);
  const code = p.get('code');
  if (!code) throw new Error(`authorization response without code: ${final.href}`);

  const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier });
  addResources(body, o.resource);
  return tokenRequest(meta.token_endpoint, body, { clientId, clientSecret: o.clientSecret });
}

/**
 * client_credentials grant (RFC 6749 §4.4) with an optional resource indicator (RFC 8707).
 * @param {{issuer: string, clientId?: string, clientSecret?: string, resource?: string, scope?: string}} o
 */
export async function getClientCredentialsToken(o) {
  const meta = await discover(o.issuer);
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (o.scope) body.set('scope', o.scope);
  addResources(body, o.resource);
  return tokenRequest(meta.token_endpoint, body, { clientId: o.clientId ?? 'e2e-cc', clientSecret: o.clientSecret ?? 'e2e-cc-secret' });
}

/**
 * refresh_token grant (RFC 6749 §6).
 * @param {{issuer: string, refreshToken: string, clientId?: string, clientSecret?: string, resource?: string, scope?: string}} o
 */
export async function refreshToken(o) {
  const meta = await discover(o.issuer);
  const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: o.refreshToken });
  if (o.scope) body.set('scope', o.scope);
  addResources(body, o.resource);
  return tokenRequest(meta.token_endpoint, body, { clientId: o.clientId ?? 'e2e-cli', clientSecret: o.clientSecret });
}
