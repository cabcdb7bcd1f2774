#!/usr/bin/env node
// A local OpenID Provider for mcpgate's end-to-end tests, built on oidc-provider.
// DEV/TEST ONLY: plain http on 127.0.0.1, fixed users with guessable passwords, automatic consent.
//
//   node idp.mjs [--port N] [--clients JSON|@file] [--users JSON|@file]
//
// Prints one JSON line on stdout once it listens: {"issuer":"http://127.0.0.1:N","port":N}.
// Stops on SIGTERM/SIGINT. See README.md for users, clients and environment variables.

import http from 'node:http';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const DEFAULT_USERS = {
  alice: { groups: ['mcp-admins'] },
  bob: { groups: ['mcp-readers'] },
  carol: { groups: [] },
};

const DEFAULT_CLIENTS = [
  {
    // mcpgate's upstream OIDC client (authorization-server mode). A native client so that any
    // loopback port matches (RFC 8252 §7.3): the test may not know mcpgate's port in advance.
    client_id: 'mcpgate',
    client_secret: 'mcpgate-secret',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // Public client used by get-token.mjs to mint user access tokens for resource-server mode.
    client_id: 'e2e-cli',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/cb'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  },
  {
    // mcpgate's client at the security token service (credential.type: token_exchange), and a
    // service account for credential.type: client_credentials.
    client_id: 'mcpgate-sts',
    client_secret: 'mcpgate-sts-secret',
    grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange', 'client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // Machine client: client_credentials with a resource indicator gives a JWT for that resource.
    client_id: 'e2e-cc',
    client_secret: 'e2e-cc-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    e2e_claims: { groups: ['mcp-readers'] },
  },
];

const DEFAULT_RESOURCE_SCOPES = 'mcp mcp:read mcp:write mcp:tools mcp:admin';

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

/** Parses a JSON option given inline or as @file. */
function jsonOption(name, raw) {
  if (raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw);
  } catch (err) {
    return fail(`${name}: ${err.message}`);
  }
}

/** Default clients, with entries of `overrides` merged by client_id and new ones appended. */
function mergeClients(overrides = []) {
  if (!Array.isArray(overrides)) fail('clients: must be a JSON array of client metadata objects');
  const byId = new Map(DEFAULT_CLIENTS.map((c) => [c.client_id, { ...c }]));
  for (const o of overrides) {
    if (!o || typeof o.client_id !== 'string') fail('clients: every entry needs a client_id');
    byId.set(o.client_id, { ...(byId.get(o.client_id) ?? {}), ...o });
  }
  return [...byId.values()];
}

function userClaims(username, user) {
  return {
    sub: username,
    name: user.name ?? username[0].toUpperCase() + username.slice(1),
    preferred_username: username,
    email: user.email ?? `${username}@example.test`,
    email_verified: user.email_verified ?? true,
  };
}

/** {a: {b: groups}} for the claim path "a.b". */
function nestClaim(path, value) {
  return path.reduceRight((inner, key) => ({ [key]: inner }), value);
}

async function signingKeys() {
  const keys = [];
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    const jwk = await jose.exportJWK(privateKey);
    jwk.kid = await jose.calculateJwkThumbprint(jwk);
    jwk.alg = alg;
    jwk.use = 'sig';
    keys.push(jwk);
  }
  return keys; // RS256 first: the default for ID tokens
}

const esc = (s) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(res, status, title, body) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    // No form-action: Chromium applies it to the redirects after the POST too, and the login
    // ends in a redirect to the client's redirect URI.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:3em auto}label{display:block;margin:.6em 0}input{display:block;width:100%}.error{color:#b00}</style>
</head><body>
${body}
</body></html>`);
}

function loginPage(res, status, { uid, clientId, username = '', error }) {
  page(
    res,
    status,
    'Sign in - e2e IdP',
    `<h1>Sign in</h1>
<p>to continue to <b>${esc(clientId)}</b></p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" value="${esc(username)}" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password">
<p><button type="submit" name="action" value="login">Sign in</button></p>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>`,
  );
}

async function readForm(req, limit = 16384) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function passwordMatches(given, expected) {
  const a = crypto.createHash('sha256').update(String(given)).digest();
  const b = crypto.createHash('sha256').update(String(expected)).digest();
  return crypto.timingSafeEqual(a, b);
}

const TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/**
 * RFC 8693 token exchange, as a security token service for mcpgate's `credential.type: token_exchange`.
 * The subject token must be an access token this IdP issued and that is still valid: an opaque one
 * (looked up) or a JWT (verified against the IdP's own keys). The answer is a JWT access token for the
 * requested `audience` (the resource server verifies it with this IdP's JWKS), naming the user as `sub`
 * and the client that asked as the actor (`act`, RFC 8693 §4.1). An audience starting with
 * `urn:e2e:forbidden` is refused with invalid_target, for the tests of refusals.
 */
function registerTokenExchange(provider, { issuer, jwks, users, ttl }) {
  const rs256 = jwks.keys.find((k) => k.alg === 'RS256');
  const publicKeys = jose.createLocalJWKSet({ keys: jwks.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) });
  const handler = async (ctx) => {
    const p = ctx.oidc.params;
    const refuse = (Err, msg) => {
      throw new Err(msg);
    };
    if (!p.subject_token) refuse(errors.InvalidRequest, 'missing subject_token');
    if (p.subject_token_type !== `${TOKEN_TYPE}access_token` && p.subject_token_type !== `${TOKEN_TYPE}jwt`) {
      refuse(errors.InvalidRequest, 'unsupported subject_token_type');
    }
    if (p.requested_token_type && p.requested_token_type !== `${TOKEN_TYPE}access_token` && p.requested_token_type !== `${TOKEN_TYPE}jwt`) {
      refuse(errors.InvalidRequest, 'unsupported requested_token_type');
    }
    if (!p.audience) refuse(errors.InvalidTarget, 'audience is required');
    if (p.audience.startsWith('urn:e2e:forbidden')) refuse(errors.InvalidTarget, 'this audience is not available to the user');
    let sub;
    if (p.subject_token.split('.').length === 3) {
      try {
        ({ payload: { sub } } = await jose.jwtVerify(p.subject_token, publicKeys, { issuer }));
      } catch {
        refuse(errors.InvalidGrant, 'subject token invalid');
      }
    } else {
      const at = await provider.AccessToken.find(p.subject_token);
      if (!at || at.isExpired) refuse(errors.InvalidGrant, 'subject token invalid or expired');
      sub = at.accountId;
    }
    if (!sub || !Object.hasOwn(users, sub)) refuse(errors.InvalidGrant, 'subject unknown');
    const now = Math.floor(Date.now() / 1000);
    const clientId = ctx.oidc.client.clientId;
    const token = await new jose.SignJWT({
      scope: p.scope || undefined,
      client_id: clientId,
      act: { sub: clientId },
      ...(p.resource && { resource: p.resource }),
    })
      .setProtectedHeader({ alg: 'RS256', kid: rs256.kid, typ: 'at+jwt' })
      .setIssuer(issuer)
      .setSubject(sub)
      .setAudience(p.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + ttl)
      .setJti(crypto.randomUUID())
      .sign(await jose.importJWK(rs256, 'RS256'));
    exchanges += 1;
    ctx.body = {
      access_token: token,
      issued_token_type: p.requested_token_type === `${TOKEN_TYPE}jwt` ? `${TOKEN_TYPE}jwt` : `${TOKEN_TYPE}access_token`,
      token_type: 'Bearer',
      expires_in: ttl,
      ...(p.scope && { scope: p.scope }),
    };
  };
  provider.registerGrantType(TOKEN_EXCHANGE, handler, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope']);
}

/** Token exchanges answered so far (GET /e2e/stats). */
let exchanges = 0;

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      clients: { type: 'string' },
      users: { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port ?? process.env.IDP_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port ${values.port ?? process.env.IDP_PORT}`);
  const clients = mergeClients(jsonOption('clients', values.clients ?? process.env.IDP_CLIENTS));
  const users = { ...DEFAULT_USERS, ...(jsonOption('users', values.users ?? process.env.IDP_USERS) ?? {}) };
  const resourceScopes = process.env.IDP_RESOURCE_SCOPES ?? DEFAULT_RESOURCE_SCOPES;
  const accessTokenTTL = Number(process.env.IDP_ACCESS_TOKEN_TTL ?? 300);
  if (!Number.isInteger(accessTokenTTL) || accessTokenTTL < 1) fail('IDP_ACCESS_TOKEN_TTL must be a positive integer (seconds)');
  const accessTokenAlg = process.env.IDP_ACCESS_TOKEN_ALG ?? 'RS256';
  if (!['RS256', 'ES256'].includes(accessTokenAlg)) fail('IDP_ACCESS_TOKEN_ALG must be RS256 or ES256');
  // oidc-provider cannot introspect JWT access tokens: introspection-mode tests need opaque ones.
  const accessTokenFormat = process.env.IDP_ACCESS_TOKEN_FORMAT ?? 'jwt';
  if (!['jwt', 'opaque'].includes(accessTokenFormat)) fail('IDP_ACCESS_TOKEN_FORMAT must be jwt or opaque');
  const debug = process.env.IDP_DEBUG === '1';
  // Test-only user administration (PUT/DELETE /e2e/users/<name>), off unless a token is given.
  const adminToken = process.env.IDP_ADMIN_TOKEN ?? '';
  // Where the groups go and under which claim, to mimic IdPs that put them in one place only
  // (e.g. only the ID token) or nested (Keycloak's realm_access.roles).
  const groupsPath = (process.env.IDP_GROUPS_CLAIM ?? 'groups').split('.');
  if (groupsPath.some((p) => !/^[\w:-]+$/.test(p))) fail('IDP_GROUPS_CLAIM must be a dot-separated claim path');
  const groupsIn = new Set((process.env.IDP_GROUPS_IN ?? 'id_token,userinfo,access_token').split(',').map((x) => x.trim()).filter(Boolean));
  for (const x of groupsIn) if (!['id_token', 'userinfo', 'access_token'].includes(x)) fail(`IDP_GROUPS_IN: unknown place ${x}`);
  const groupsFor = (where, user) => (groupsIn.has(where) ? nestClaim(groupsPath, user.groups ?? []) : {});

  // Listen first: the issuer URL contains the port, which may be chosen by the kernel.
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  const jwks = { keys: await signingKeys() };
  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    async findAccount(_ctx, id) {
      const user = Object.hasOwn(users, id) ? users[id] : undefined;
      if (!user) return undefined;
      // `use` is "id_token" or "userinfo".
      return { accountId: id, claims: async (use) => ({ ...userClaims(id, user), ...groupsFor(use, user) }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: [groupsPath[0]],
    },
    // Resource scopes are listed too: dynamic registration rejects a client `scope` with values
    // the server does not advertise, and MCP SDKs register with the resource's scopes.
    scopes: [...new Set(['openid', 'offline_access', 'email', 'profile', 'groups', ...resourceScopes.split(' ').filter(Boolean)])],
    // Put scope-requested claims (groups, email…) in the ID token too, as Keycloak and Dex do.
    conformIdTokenClaims: false,
    extraClientMetadata: {
      properties: ['e2e_claims'],
      validator(_ctx, key, value) {
        if (key === 'e2e_claims' && value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
          throw new errors.InvalidClientMetadata('e2e_claims must be a JSON object');
        }
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      registration: { enabled: true }, // open dynamic registration, for SDK clients
      resourceIndicators: {
        enabled: true,
        async defaultResource() {
          return undefined;
        },
        async getResourceServerInfo(_ctx, resource) {
          const u = URL.parse(resource);
          if (!u || !['http:', 'https:'].includes(u.protocol)) {
            throw new errors.InvalidTarget('resource must be an http(s) URL');
          }
          return {
            scope: resourceScopes,
            accessTokenFormat,
            accessTokenTTL,
            ...(accessTokenFormat === 'jwt' && { jwt: { sign: { alg: accessTokenAlg } } }),
          };
        },
      },
    },
    pkce: { required: () => true },
    // Every client allowed the refresh_token grant gets one, with or without offline_access.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: true,
    async extraTokenClaims(ctx, token) {
      if (token.accountId && Object.hasOwn(users, token.accountId)) {
        const user = users[token.accountId];
        const { preferred_username, email, email_verified } = userClaims(token.accountId, user);
        return { preferred_username, email, email_verified, ...groupsFor('access_token', user) };
      }
      if (token.kind === 'ClientCredentials') return ctx.oidc.client?.e2e_claims;
      return undefined;
    },
    ttl: {
      AccessToken: accessTokenTTL,
      ClientCredentials: accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 24 * 3600,
    },
  });

  registerTokenExchange(provider, { issuer, jwks, users, ttl: accessTokenTTL });

  provider.on('server_error', (_ctx, err) => process.stderr.write(`idp: server_error: ${err.stack ?? err}\n`));
  if (debug) {
    for (const ev of ['authorization.error', 'grant.error', 'introspection.error', 'revocation.error', 'registration_create.error', 'userinfo.error']) {
      provider.on(ev, (_ctx, err) => process.stderr.write(`idp: ${ev}: ${err.message} ${err.error_description ?? ''}\n`));
    }
  }

  const providerCallback = provider.callback();

  async function interaction(req, res, uid, action) {
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      return page(res, 400, 'Error', `<h1>Sign-in failed</h1><p class="error">${esc(err.error_description ?? err.message)}</p>`);
    }
    if (details.uid !== uid) {
      return page(res, 400, 'Error', '<h1>Sign-in failed</h1><p class="error">interaction mismatch</p>');
    }
    const { prompt, params, session } = details;

    if (action === 'abort' && req.method === 'GET') {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
    }

    if (action === 'login' && req.method === 'POST') {
      if (prompt.name !== 'login') return page(res, 400, 'Error', '<h1>Unexpected login</h1>');
      let form;
      try {
        form = await readForm(req);
      } catch (err) {
        return page(res, 413, 'Error', `<h1>${esc(err.message)}</h1>`);
      }
      const username = form.get('username') ?? '';
      const user = Object.hasOwn(users, username) ? users[username] : undefined;
      const expected = user?.password ?? `${username}-pw`;
      if (!user || !passwordMatches(form.get('password') ?? '', expected)) {
        return loginPage(res, 401, { uid, clientId: params.client_id, username, error: 'Invalid username or password.' });
      }
      return provider.interactionFinished(req, res, { login: { accountId: username, amr: ['pwd'] } }, { mergeWithLastSubmission: false });
    }

    if (action === '' && req.method === 'GET') {
      if (prompt.name === 'login') {
        return loginPage(res, 200, { uid, clientId: params.client_id, username: params.login_hint ?? '' });
      }
      if (prompt.name === 'consent') {
        // Consent is automatic: the e2e IdP trusts every client. mcpgate's own consent page is
        // the one under test.
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const d = prompt.details;
        if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
        if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
        if (d.missingResourceScopes) {
          for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
            grant.addResourceScope(indicator, scopes.join(' '));
          }
        }
        const grantId = await grant.save();
        return provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
      }
      return page(res, 400, 'Error', `<h1>Unsupported prompt ${esc(prompt.name)}</h1>`);
    }
    res.writeHead(405, { allow: 'GET, POST' });
    res.end();
  }

  /** PUT /e2e/users/<name> {"groups": [...], ...} merges into (or adds) a user; DELETE removes one. */
  async function adminUsers(req, res, name) {
    if (!passwordMatches(req.headers.authorization ?? '', `Bearer ${adminToken}`)) {
      res.writeHead(401).end();
      return;
    }
    if (req.method === 'DELETE') {
      const existed = Object.hasOwn(users, name);
      delete users[name];
      res.writeHead(existed ? 204 : 404).end();
      return;
    }
    if (req.method !== 'PUT') {
      res.writeHead(405, { allow: 'PUT, DELETE' }).end();
      return;
    }
    let patch;
    try {
      const chunks = [];
      let size = 0;
      for await (const chunk of req) {
        size += chunk.length;
        if (size > 16384) throw new Error('request body too large');
        chunks.push(chunk);
      }
      patch = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (!patch || typeof patch !== 'object' || Array.isArray(patch)) throw new Error('body must be a JSON object');
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(err.message);
      return;
    }
    users[name] = { ...(Object.hasOwn(users, name) ? users[name] : {}), ...patch };
    res.writeHead(204).end();
  }

  handler = async (req, res) => {
    if (debug) process.stderr.write(`idp: ${req.method} ${req.url.split('?')[0]}\n`);
    if (req.url === '/e2e/stats' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token_exchanges: exchanges }));
      return;
    }
    const admin = /^\/e2e\/users\/([\w.-]+)$/.exec(req.url);
    if (adminToken && admin) return adminUsers(req, res, admin[1]);
    const m = /^\/interaction\/([\w-]+)(?:\/(login|abort))?\/?(?:\?.*)?$/.exec(req.url);
    if (!m) return providerCallback(req, res);
    try {
      await interaction(req, res, m[1], m[2] ?? '');
    } catch (err) {
      process.stderr.write(`idp: interaction error: ${err.stack ?? err}\n`);
      if (!res.headersSent) page(res, 500, 'Error', '<h1>Internal error</h1>');
      else res.end();
    }
  };

  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  process.stdout.write(`${JSON.stringify({ issuer, port: actualPort })}\n`);
}

main().catch((err) => {
  process.stderr.write(`idp: ${err.stack ?? err}\n`);
  process.exit(1);
});
