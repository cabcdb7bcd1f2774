// Smoke tests of the e2e IdP: user and machine tokens are JWTs for the requested resource, signed
// with keys from the published JWKS, carrying the claims mcpgate reads. Run: node --test

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import { startIdP } from './lib/idp.mjs';
import { discover, getClientCredentialsToken, getUserToken, pkcePair, refreshToken } from './lib/oauth.mjs';
import { followAuthorization } from './lib/forms.mjs';

const RESOURCE = 'http://127.0.0.1:9/mcp';
const GET_TOKEN = fileURLToPath(new URL('./get-token.mjs', import.meta.url));
const run = promisify(execFile);

/** RFC 7662 introspection request authenticated as the mcpgate client. */
function introspect(meta, token) {
  return fetch(meta.introspection_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from('mcpgate:mcpgate-secret').toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
  });
}

/** Checks the JWS header against the JWKS and verifies the signature, issuer, audience and type. */
async function verifyAccessToken(token, meta, { alg = 'RS256', audience = RESOURCE } = {}) {
  const header = jose.decodeProtectedHeader(token);
  assert.equal(header.alg, alg);
  assert.equal(header.typ, 'at+jwt'); // RFC 9068 §2.1
  assert.ok(header.kid, 'kid header');
  const jwks = await (await fetch(meta.jwks_uri)).json();
  const key = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(key, `kid ${header.kid} is in the JWKS`);
  assert.equal(key.alg, alg);
  assert.equal(key.d, undefined, 'the JWKS has no private parts');
  const { payload } = await jose.jwtVerify(token, jose.createLocalJWKSet(jwks), {
    issuer: meta.issuer,
    audience,
    typ: 'at+jwt',
    algorithms: [alg],
  });
  return payload;
}

describe('e2e IdP (RS256)', () => {
  let idp;
  let meta;
  before(async () => {
    idp = await startIdP();
    meta = await discover(idp.issuer);
  });
  after(() => idp?.stop());

  test('announces an http://127.0.0.1 issuer with PKCE S256 and resource indicators', () => {
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(idp.issuer, `http://127.0.0.1:${idp.port}`);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.ok(meta.grant_types_supported.includes('client_credentials'));
    assert.ok(meta.scopes_supported.includes('groups'));
    assert.ok(meta.claims_supported.includes('groups'));
    assert.equal(meta.authorization_response_iss_parameter_supported, true);
    assert.ok(meta.introspection_endpoint);
    assert.ok(meta.registration_endpoint);
  });

  test('JWKS holds one RS256 and one ES256 public key', async () => {
    const { keys } = await (await fetch(meta.jwks_uri)).json();
    assert.deepEqual(keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
    for (const k of keys) {
      assert.equal(k.use, 'sig');
      assert.equal(k.d, undefined);
    }
  });

  for (const [user, groups] of [
    ['alice', ['mcp-admins']],
    ['bob', ['mcp-readers']],
    ['carol', []],
  ]) {
    test(`user token for ${user}: JWT for the resource with groups and scope`, async () => {
      const tokens = await getUserToken({ issuer: idp.issuer, user, resource: RESOURCE, scope: 'openid profile email groups mcp:tools' });
      assert.equal(tokens.token_type, 'Bearer');
      assert.equal(tokens.scope, 'mcp:tools');
      assert.ok(tokens.refresh_token, 'refresh token issued');
      const at = await verifyAccessToken(tokens.access_token, meta);
      assert.equal(at.sub, user);
      assert.equal(at.aud, RESOURCE);
      assert.equal(at.client_id, 'e2e-cli');
      assert.equal(at.scope, 'mcp:tools');
      assert.deepEqual(at.groups, groups);
      assert.equal(at.preferred_username, user);
      assert.equal(at.email, `${user}@example.test`);
      assert.equal(at.exp - at.iat, 300);
      assert.ok(at.jti);

      const { payload: id } = await jose.jwtVerify(tokens.id_token, jose.createRemoteJWKSet(new URL(meta.jwks_uri)), {
        issuer: idp.issuer,
        audience: 'e2e-cli',
      });
      assert.equal(id.sub, user);
      assert.deepEqual(id.groups, groups);
      assert.equal(id.email_verified, true);
      assert.equal(id.preferred_username, user);
    });
  }

  test('scopes unknown to the resource are dropped from the access token', async () => {
    const tokens = await getUserToken({ issuer: idp.issuer, user: 'bob', resource: RESOURCE, scope: 'openid mcp:read other:scope' });
    const at = await verifyAccessToken(tokens.access_token, meta);
    assert.equal(at.scope, 'mcp:read');
  });

  test('userinfo returns groups and email for an OIDC login without resource', async () => {
    const tokens = await getUserToken({ issuer: idp.issuer, user: 'bob', scope: 'openid profile email groups' });
    const res = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(res.status, 200);
    const info = await res.json();
    assert.deepEqual(info, {
      sub: 'bob',
      name: 'Bob',
      preferred_username: 'bob',
      email: 'bob@example.test',
      email_verified: true,
      groups: ['mcp-readers'],
    });
  });

  test('the confidential mcpgate client works with any loopback port in its redirect URI', async () => {
    const tokens = await getUserToken({
      issuer: idp.issuer,
      user: 'alice',
      clientId: 'mcpgate',
      clientSecret: 'mcpgate-secret',
      redirectUri: 'http://127.0.0.1:54321/callback',
      scope: 'openid email groups offline_access',
    });
    assert.ok(tokens.id_token);
    assert.ok(tokens.refresh_token);
    const id = jose.decodeJwt(tokens.id_token);
    assert.equal(id.aud, 'mcpgate');
    assert.deepEqual(id.groups, ['mcp-admins']);
  });

  test('refresh rotates the refresh token and replaying the old one fails', async () => {
    const first = await getUserToken({ issuer: idp.issuer, user: 'alice', resource: RESOURCE, scope: 'openid groups mcp:tools' });
    const second = await refreshToken({ issuer: idp.issuer, refreshToken: first.refresh_token, resource: RESOURCE });
    assert.notEqual(second.refresh_token, first.refresh_token);
    const at = await verifyAccessToken(second.access_token, meta);
    assert.deepEqual(at.groups, ['mcp-admins']);
    assert.equal(at.scope, 'mcp:tools');
    await assert.rejects(refreshToken({ issuer: idp.issuer, refreshToken: first.refresh_token, resource: RESOURCE }), (err) => {
      assert.equal(err.oauthError, 'invalid_grant');
      return true;
    });
  });

  test('client_credentials gives a JWT for the resource with the client claims', async () => {
    const tokens = await getClientCredentialsToken({ issuer: idp.issuer, resource: RESOURCE, scope: 'mcp:tools mcp:read' });
    assert.equal(tokens.refresh_token, undefined);
    const at = await verifyAccessToken(tokens.access_token, meta);
    assert.equal(at.sub, 'e2e-cc');
    assert.equal(at.client_id, 'e2e-cc');
    assert.equal(at.aud, RESOURCE);
    assert.equal(at.scope, 'mcp:tools mcp:read');
    assert.deepEqual(at.groups, ['mcp-readers']);
  });

  test('JWT access tokens cannot be introspected (oidc-provider limitation)', async () => {
    const { access_token: token } = await getClientCredentialsToken({ issuer: idp.issuer, resource: RESOURCE, scope: 'mcp:tools' });
    const res = await introspect(meta, token);
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, 'unsupported_token_type');
  });

  describe('rejections', () => {
    test('wrong password', async () => {
      await assert.rejects(getUserToken({ issuer: idp.issuer, user: 'alice', password: 'bob-pw', resource: RESOURCE }), /login rejected.*Invalid username or password/);
    });
    test('unknown user', async () => {
      await assert.rejects(getUserToken({ issuer: idp.issuer, user: 'mallory', resource: RESOURCE }), /login rejected/);
    });
    test('client_credentials with a wrong secret', async () => {
      await assert.rejects(getClientCredentialsToken({ issuer: idp.issuer, clientSecret: 'nope', resource: RESOURCE }), (err) => {
        assert.equal(err.status, 401);
        assert.equal(err.oauthError, 'invalid_client');
        return true;
      });
    });
    test('client_credentials with a non-http resource', async () => {
      await assert.rejects(getClientCredentialsToken({ issuer: idp.issuer, resource: 'urn:example:x' }), (err) => {
        assert.equal(err.oauthError, 'invalid_target');
        return true;
      });
    });
    test('authorization request without PKCE', async () => {
      const url = new URL(meta.authorization_endpoint);
      url.search = new URLSearchParams({ response_type: 'code', client_id: 'mcpgate', redirect_uri: 'http://127.0.0.1/callback', scope: 'openid', state: 's' });
      const final = await followAuthorization(url, { redirectUri: 'http://127.0.0.1/callback' });
      assert.equal(final.searchParams.get('error'), 'invalid_request');
      assert.match(final.searchParams.get('error_description'), /PKCE/);
    });
    test('authorization request with PKCE plain', async () => {
      const url = new URL(meta.authorization_endpoint);
      const { verifier } = pkcePair();
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: 'e2e-cli',
        redirect_uri: 'http://127.0.0.1/cb',
        scope: 'openid',
        code_challenge: verifier,
        code_challenge_method: 'plain',
      });
      const final = await followAuthorization(url, { redirectUri: 'http://127.0.0.1/cb' });
      assert.equal(final.searchParams.get('error'), 'invalid_request');
    });
    test('unregistered redirect URI gets an error page, not a redirect', async () => {
      await assert.rejects(
        getUserToken({ issuer: idp.issuer, user: 'alice', clientId: 'mcpgate', clientSecret: 'mcpgate-secret', redirectUri: 'http://127.0.0.1:5/elsewhere' }),
        /page without a form.*redirect_uri/,
      );
    });
    test('cancel at the login page returns access_denied', async () => {
      const url = new URL(meta.authorization_endpoint);
      const { challenge } = pkcePair();
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: 'e2e-cli',
        redirect_uri: 'http://127.0.0.1/cb',
        scope: 'openid',
        code_challenge: challenge,
        code_challenge_method: 'S256',
      });
      // Stop at the login page, then follow its Cancel link by hand.
      const { CookieJar, jarFetch } = await import('./lib/cookies.mjs');
      const jar = new CookieJar();
      let res = await jarFetch(jar, url);
      const interaction = new URL(res.headers.get('location'), url);
      res = await jarFetch(jar, interaction);
      assert.equal(res.status, 200);
      const html = await res.text();
      const abort = /href="([^"]+\/abort)"/.exec(html)[1];
      const final = await followAuthorization(new URL(abort, interaction), { jar, redirectUri: 'http://127.0.0.1/cb' });
      assert.equal(final.searchParams.get('error'), 'access_denied');
    });
  });

  describe('get-token.mjs CLI', () => {
    test('prints the token response as JSON', async () => {
      const { stdout } = await run(process.execPath, [GET_TOKEN, '--issuer', idp.issuer, '--user', 'bob', '--resource', RESOURCE, '--scope', 'openid groups mcp:read']);
      const tokens = JSON.parse(stdout);
      const at = await verifyAccessToken(tokens.access_token, meta);
      assert.equal(at.sub, 'bob');
      assert.equal(at.scope, 'mcp:read');
    });
    test('--raw --client-credentials prints only the access token', async () => {
      const { stdout } = await run(process.execPath, [GET_TOKEN, '--raw', '--client-credentials', '--resource', RESOURCE, '--scope', 'mcp:tools'], {
        env: { ...process.env, IDP_ISSUER: idp.issuer },
      });
      const at = await verifyAccessToken(stdout.trim(), meta);
      assert.equal(at.sub, 'e2e-cc');
    });
    test('exits 1 with a message on a wrong password', async () => {
      await assert.rejects(run(process.execPath, [GET_TOKEN, '--issuer', idp.issuer, '--user', 'alice', '--password', 'x', '--resource', RESOURCE]), (err) => {
        assert.equal(err.code, 1);
        assert.match(err.stderr, /get-token: login rejected/);
        return true;
      });
    });
  });
});

describe('e2e IdP with ES256 access tokens and custom clients', () => {
  let idp;
  let meta;
  before(async () => {
    idp = await startIdP({
      env: { IDP_ACCESS_TOKEN_ALG: 'ES256', IDP_ACCESS_TOKEN_TTL: '60', IDP_RESOURCE_SCOPES: 'tools:call' },
      clients: [{ client_id: 'svc', client_secret: 'svc-secret', grant_types: ['client_credentials'], response_types: [], e2e_claims: { groups: ['mcp-admins'], tenant: 't1' } }],
      users: { dave: { groups: ['mcp-operators'], password: 'secret-d' } },
    });
    meta = await discover(idp.issuer);
  });
  after(() => idp?.stop());

  test('client_credentials for a custom client with custom claims, ES256 and TTL', async () => {
    const tokens = await getClientCredentialsToken({ issuer: idp.issuer, clientId: 'svc', clientSecret: 'svc-secret', resource: RESOURCE, scope: 'tools:call mcp:tools' });
    const at = await verifyAccessToken(tokens.access_token, meta, { alg: 'ES256' });
    assert.equal(at.sub, 'svc');
    assert.equal(at.scope, 'tools:call');
    assert.deepEqual(at.groups, ['mcp-admins']);
    assert.equal(at.tenant, 't1');
    assert.equal(at.exp - at.iat, 60);
  });

  test('a user from IDP_USERS signs in with its own password', async () => {
    const tokens = await getUserToken({ issuer: idp.issuer, user: 'dave', password: 'secret-d', resource: RESOURCE, scope: 'openid tools:call' });
    const at = await verifyAccessToken(tokens.access_token, meta, { alg: 'ES256' });
    assert.equal(at.sub, 'dave');
    assert.deepEqual(at.groups, ['mcp-operators']);
    await assert.rejects(getUserToken({ issuer: idp.issuer, user: 'dave', resource: RESOURCE }), /login rejected/);
  });
});

describe('e2e IdP with opaque access tokens (introspection mode)', () => {
  let idp;
  let meta;
  before(async () => {
    idp = await startIdP({ env: { IDP_ACCESS_TOKEN_FORMAT: 'opaque' } });
    meta = await discover(idp.issuer);
  });
  after(() => idp?.stop());

  test('a user access token is opaque and introspects as active with claims', async () => {
    const tokens = await getUserToken({ issuer: idp.issuer, user: 'bob', resource: RESOURCE, scope: 'openid groups mcp:read' });
    assert.equal(tokens.access_token.split('.').length, 1, 'not a JWT');
    const res = await introspect(meta, tokens.access_token);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.active, true);
    assert.equal(body.sub, 'bob');
    assert.equal(body.aud, RESOURCE);
    assert.equal(body.scope, 'mcp:read');
    assert.equal(body.client_id, 'e2e-cli');
    assert.equal(body.iss, idp.issuer);
    assert.equal(body.token_type, 'Bearer');
    assert.deepEqual(body.groups, ['mcp-readers']);
  });

  test('an unknown token introspects as inactive', async () => {
    const res = await introspect(meta, 'not-a-token');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { active: false });
  });
});

describe('e2e IdP with groups only in the ID token, nested (IDP_GROUPS_IN, IDP_GROUPS_CLAIM)', () => {
  let idp;
  let meta;
  before(async () => {
    idp = await startIdP({ env: { IDP_GROUPS_IN: 'id_token', IDP_GROUPS_CLAIM: 'realm_access.roles' } });
    meta = await discover(idp.issuer);
  });
  after(() => idp?.stop());

  test('the ID token has realm_access.roles; the access token and userinfo have no groups', async () => {
    const tokens = await getUserToken({ issuer: idp.issuer, user: 'alice', resource: RESOURCE, scope: 'openid groups email mcp:tools' });
    const id = jose.decodeJwt(tokens.id_token);
    assert.deepEqual(id.realm_access, { roles: ['mcp-admins'] });
    assert.equal(id.groups, undefined);
    const at = await verifyAccessToken(tokens.access_token, meta);
    assert.equal(at.groups, undefined);
    assert.equal(at.realm_access, undefined);
    assert.equal(at.email, 'alice@example.test');

    const oidc = await getUserToken({ issuer: idp.issuer, user: 'alice', scope: 'openid groups email' });
    const info = await (await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${oidc.access_token}` } })).json();
    assert.equal(info.sub, 'alice');
    assert.equal(info.email, 'alice@example.test');
    assert.equal(info.realm_access, undefined);
    assert.equal(info.groups, undefined);
  });

  test('an unknown place is refused at start', async () => {
    await assert.rejects(startIdP({ env: { IDP_GROUPS_IN: 'cookie' } }), /IDP_GROUPS_IN: unknown place cookie/);
  });
});
