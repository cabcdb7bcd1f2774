// The built-in authorization server is audited in the gateway's hash chain (issue 10 point 8):
// a login → refresh → reuse → revoke run against the real mcpgate binary, then `mcpgate audit
// verify` on the audit file (passes), and on a copy with one record edited by hand (fails).
//
// Gateways (one binary):
//   static  authorization_server with a built-in user; a client ID metadata document served over
//           https by this test (its self-signed certificate is the gateway's only trusted root,
//           via SSL_CERT_FILE); refresh_grace 1s; signing keys rotated by `mcpgate keys rotate`
//   oidc    authorization_server federating to the e2e IdP (oidc-provider); the demo backend gets
//           the user's upstream token (credential: upstream_token), refreshed on every use
//           (upstream_refresh_skew above the IdP's token lifetime), so stopping the IdP makes the
//           refresh fail

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { startIdP } from './lib/idp.mjs';
import { followAuthorization } from './lib/forms.mjs';
import { pkcePair } from './lib/oauth.mjs';
import { freePort, stopAll } from './lib/proc.mjs';
import {
  AS_LOAD_LIMITS,
  READER_ADMIN_POLICY,
  authServerYAML,
  authorizeURL,
  buildMcpgate,
  cleanupTempDirs,
  hashPassword,
  mcpgateCLI,
  oidcUpstream,
  registerClient,
  run,
  startDemoBackend,
  startMcpgate,
  staticUpstream,
  tempDir,
} from './lib/mcpgate.mjs';

let idp;
let demo;
let cimd;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let stat;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let oidc;
/** Every secret, code and token this test saw: none may appear in an audit file. */
const secrets = new Set(['alice-pw', 'wrong-pw-4711', 'bob-pw', 'carol-pw', 'mcpgate-secret']);

const POLICY = READER_ADMIN_POLICY;

/** A self-signed certificate for 127.0.0.1 (openssl) and an https server for metadata documents. */
async function startCIMDServer(redirectUri) {
  const dir = await tempDir('mcpgate-e2e-cimd-');
  const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
  const port = await freePort();
  const url = `https://127.0.0.1:${port}/client.json`;
  const server = https.createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    if (req.url !== '/client.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ client_id: url, client_name: 'E2E metadata document client', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }));
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url, certFile: cert, stop: () => new Promise((resolve) => server.close(resolve)) };
}

before(async () => {
  const redirectUri = `http://127.0.0.1:${await freePort()}/cb`;
  [idp, demo, cimd] = await Promise.all([startIdP(), (async () => (await buildMcpgate(), startDemoBackend()))(), startCIMDServer(redirectUri)]);
  cimd.redirectUri = redirectUri;
  const hAlice = await hashPassword('alice-pw');
  [stat, oidc] = await Promise.all([
    startMcpgate({
      name: 'asaudit-static',
      env: { SSL_CERT_FILE: cimd.certFile },
      config: ({ dir }) => `${authServerYAML({
        as: [AS_LOAD_LIMITS, 'refresh_grace: 1s', 'revocation_cache_ttl: 1s', 'registration: { max_clients_per_ip: -1 }', 'cimd: { allow_private: true }'],
        upstream: staticUpstream([{ name: 'alice', groups: ['mcp-admins'], hash: hAlice }]),
      })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
    startMcpgate({
      name: 'asaudit-oidc',
      config: ({ dir }) => `${authServerYAML({
        as: [AS_LOAD_LIMITS, 'upstream_refresh_skew: 1h'],
        upstream: oidcUpstream(idp.issuer, 'allowed_groups: [mcp-admins, mcp-readers]'),
      })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
    credential: { type: upstream_token }
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
  ]);
});

after(async () => {
  await stopAll();
  await cimd?.stop();
  await cleanupTempDirs();
});

// ---------------------------------------------------------------------------------------------
// helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An authorization code for `client` (login and consent walked over HTTP), or the error redirect. */
async function authorize(gw, client, opts) {
  const { verifier, challenge } = pkcePair();
  const final = await followAuthorization(authorizeURL(gw, client.id, client.redirectUri, challenge), { redirectUri: client.redirectUri, ...opts });
  const code = final.searchParams.get('code');
  if (code) secrets.add(code);
  secrets.add(verifier);
  return { code, error: final.searchParams.get('error'), verifier };
}

/** POST a form to an authorization-server endpoint as `client` (Basic when it has a secret). */
async function post(gw, endpoint, client, params) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const body = new URLSearchParams(params);
  if (client.secret) {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`).toString('base64')}`;
  } else {
    body.set('client_id', client.id);
  }
  const res = await fetch(`${gw.base}${endpoint}`, { method: 'POST', headers, body });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  for (const k of ['access_token', 'refresh_token']) if (json[k]) secrets.add(json[k]);
  return { status: res.status, json };
}

async function tokens(gw, client, { code, verifier }) {
  const r = await post(gw, '/token', client, { grant_type: 'authorization_code', code, redirect_uri: client.redirectUri, code_verifier: verifier });
  assert.equal(r.status, 200, `token: ${JSON.stringify(r.json.error)}`);
  return r.json;
}

/** registerClient that remembers the client secret (it must appear in no audit record). */
async function register(gw, meta) {
  const r = await registerClient(gw, meta);
  if (r.json.client_secret) secrets.add(r.json.client_secret);
  return r;
}

async function mcpCall(gw, token) {
  const res = await fetch(`${gw.base}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'list_vms', arguments: {} } }),
  });
  await res.body?.cancel();
  return res.status;
}

async function records(gw) {
  return (await readFile(gw.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// ---------------------------------------------------------------------------------------------

test('authorization server events are in the audit chain: login → refresh → reuse → revoke; verify passes; an edited record is caught', async () => {
  // Registration: refused, then a confidential client.
  assert.equal((await register(stat, { client_name: 'bad', redirect_uris: ['http://evil.example/cb'] })).status, 400);
  const redirectUri = `http://127.0.0.1:${await freePort()}/cb`;
  const reg = await register(stat, { client_name: 'E2E audit client', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'client_secret_basic' });
  assert.equal(reg.status, 201);
  const client = { id: reg.json.client_id, secret: reg.json.client_secret, redirectUri };

  // First use of a client ID metadata document client.
  const { challenge } = pkcePair();
  const md = await fetch(authorizeURL(stat, cimd.url, cimd.redirectUri, challenge), { redirect: 'manual' });
  assert.equal(md.status, 303, 'the metadata document was fetched and the sign-in starts');
  assert.match(md.headers.get('location') ?? '', /\/login\?/);

  // Consent refused; a wrong password; then login and consent.
  assert.equal((await authorize(stat, client, { username: 'alice', password: 'alice-pw', choice: 'deny' })).error, 'access_denied');
  await assert.rejects(authorize(stat, client, { username: 'alice', password: 'wrong-pw-4711' }), /login rejected/);
  const first = await authorize(stat, client, { username: 'alice', password: 'alice-pw' });
  assert.ok(first.code);

  // Code redeemed, then replayed (its grant is revoked).
  await tokens(stat, client, first);
  const replay = await post(stat, '/token', client, { grant_type: 'authorization_code', code: first.code, redirect_uri: redirectUri, code_verifier: first.verifier });
  assert.equal(replay.status, 400);

  // A new grant: an MCP call, a refresh, and a reuse after refresh_grace (1s) that revokes the family.
  const t2 = await tokens(stat, client, await authorize(stat, client, { username: 'alice', password: 'alice-pw' }));
  assert.equal(await mcpCall(stat, t2.access_token), 200);
  const refreshed = await post(stat, '/token', client, { grant_type: 'refresh_token', refresh_token: t2.refresh_token });
  assert.equal(refreshed.status, 200);
  await sleep(1500);
  const reused = await post(stat, '/token', client, { grant_type: 'refresh_token', refresh_token: t2.refresh_token });
  assert.equal(reused.status, 400);
  assert.equal(reused.json.error, 'invalid_grant');

  // A third grant: introspected by its client, then revoked.
  const t3 = await tokens(stat, client, await authorize(stat, client, { username: 'alice', password: 'alice-pw' }));
  const intro = await post(stat, '/introspect', client, { token: t3.access_token });
  assert.equal(intro.status, 200);
  assert.equal(intro.json.active, true);
  assert.equal((await post(stat, '/revoke', client, { token: t3.refresh_token })).status, 200);

  // Refusals: a wrong client secret at the token, revocation and introspection endpoints.
  const impostor = { ...client, secret: 'not-the-secret-0815' };
  secrets.add(impostor.secret);
  assert.equal((await post(stat, '/token', impostor, { grant_type: 'refresh_token', refresh_token: 'x' })).status, 401);
  assert.equal((await post(stat, '/revoke', impostor, { token: 'x' })).status, 401);
  assert.equal((await post(stat, '/introspect', impostor, { token: 'x' })).status, 401);

  // `mcpgate keys rotate` next to the running gateway, then SIGHUP: the gateway records it.
  const rot = await mcpgateCLI(['keys', 'rotate', '--config', stat.configPath]);
  assert.match(rot.stdout, /signing key rotated/);
  process.kill(stat.proc.pid, 'SIGHUP');
  let rotated;
  for (let i = 0; i < 50 && !rotated; i++) {
    rotated = (await records(stat)).find((r) => r.event === 'AS_SIGNING_KEY_ROTATED');
    if (!rotated) await sleep(100);
  }
  assert.ok(rotated, 'AS_SIGNING_KEY_ROTATED after keys rotate + SIGHUP');

  // Upstream IdP: a login, a login the gateway refuses (carol is in no allowed group), and an
  // upstream token refresh that fails once the IdP is gone.
  const oreg = await register(oidc, { client_name: 'E2E upstream', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' });
  const oclient = { id: oreg.json.client_id, redirectUri };
  const bobTokens = await tokens(oidc, oclient, await authorize(oidc, oclient, { username: 'bob', password: 'bob-pw' }));
  assert.equal(await mcpCall(oidc, bobTokens.access_token), 200, 'upstream token refreshed and passed through');
  assert.equal((await authorize(oidc, oclient, { username: 'carol', password: 'carol-pw' })).error, 'access_denied');
  await idp.stop();
  assert.equal(await mcpCall(oidc, bobTokens.access_token), 502, 'no upstream token: the backend is not called');

  // Stop both gateways (shutdown checkpoint), verify their files.
  await stat.stop();
  await oidc.stop();
  for (const gw of [stat, oidc]) {
    const v = await mcpgateCLI(['audit', 'verify', gw.auditPath], { allowFail: true });
    assert.equal(v.code, 0, `audit verify ${gw.name}: ${v.stdout}${v.stderr}`);
    const text = await readFile(gw.auditPath, 'utf8');
    for (const s of secrets) assert.ok(!text.includes(s), `a secret, code or token is in the audit log of ${gw.name}: ${s.slice(0, 6)}…`);
  }

  const srec = (await records(stat)).filter((r) => r.source === 'authserver');
  const orec = (await records(oidc)).filter((r) => r.source === 'authserver');
  const want = [
    'AS_CLIENT_REGISTRATION_REFUSED', 'AS_CLIENT_REGISTERED', 'AS_CLIENT_METADATA_FETCHED', 'AS_LOGIN_FAILED', 'AS_LOGIN_SUCCESS',
    'AS_CONSENT_GIVEN', 'AS_CONSENT_REFUSED', 'AS_CODE_ISSUED', 'AS_CODE_REDEEMED', 'AS_CODE_REPLAYED', 'AS_TOKEN_ISSUED',
    'AS_TOKEN_REFRESHED', 'AS_REFRESH_TOKEN_REUSED', 'AS_TOKEN_INTROSPECTED', 'AS_TOKEN_REVOKED', 'AS_TOKEN_REFUSED',
    'AS_REVOCATION_REFUSED', 'AS_INTROSPECTION_REFUSED', 'AS_SIGNING_KEY_ROTATED',
  ];
  const seen = new Set(srec.map((r) => r.event));
  assert.deepEqual(want.filter((e) => !seen.has(e)), [], `missing events in ${[...seen]}`);
  const oseen = new Set(orec.map((r) => r.event));
  for (const e of ['AS_CLIENT_REGISTERED', 'AS_LOGIN_SUCCESS', 'AS_LOGIN_FAILED', 'AS_UPSTREAM_REFRESH_FAILED']) assert.ok(oseen.has(e), `${e} missing in ${[...oseen]}`);

  // Who, which client, from where, with what outcome.
  for (const r of [...srec, ...orec]) {
    assert.ok(r.result === 'success' || r.result === 'error', `outcome: ${JSON.stringify(r)}`);
    if (r.event !== 'AS_SIGNING_KEY_ROTATED' && r.event !== 'AS_UPSTREAM_REFRESH_FAILED') {
      assert.equal(r.client_ip, '127.0.0.1', `address: ${JSON.stringify(r)}`);
      assert.ok(r.request_id, `request id: ${JSON.stringify(r)}`);
    }
    if (r.event !== 'AS_SIGNING_KEY_ROTATED' && r.event !== 'AS_CLIENT_REGISTRATION_REFUSED') assert.ok(r.client_id, `client: ${JSON.stringify(r)}`);
  }
  const byEvent = (recs, e) => recs.filter((r) => r.event === e);
  for (const e of ['AS_LOGIN_SUCCESS', 'AS_CONSENT_GIVEN', 'AS_CODE_ISSUED', 'AS_TOKEN_ISSUED', 'AS_TOKEN_REFRESHED', 'AS_REFRESH_TOKEN_REUSED', 'AS_TOKEN_REVOKED', 'AS_CODE_REPLAYED', 'AS_TOKEN_INTROSPECTED']) {
    for (const r of byEvent(srec, e)) {
      assert.deepEqual([r.issuer, r.subject, r.user, r.client_id], [stat.base, 'alice', 'alice', client.id], `${e} identity: ${JSON.stringify(r)}`);
    }
  }
  assert.equal(byEvent(srec, 'AS_LOGIN_FAILED')[0].username, 'alice', 'the failed login names the username typed');
  assert.equal(byEvent(srec, 'AS_CLIENT_METADATA_FETCHED')[0].client_id, cimd.url);
  assert.match(byEvent(srec, 'AS_REFRESH_TOKEN_REUSED')[0].reason, /the grant \(token family\) is revoked/);
  assert.equal(byEvent(srec, 'AS_REFRESH_TOKEN_REUSED')[0].session_id, byEvent(srec, 'AS_TOKEN_REFRESHED')[0].session_id);
  assert.match(rotated.reason, /active signing key is now \S+ \(was \S+/);
  // The MCP call and the token it used name the same token session.
  const call = (await records(stat)).find((r) => r.source === 'mcp' && r.tool === 'list_vms');
  assert.equal(call.session_id, byEvent(srec, 'AS_TOKEN_REFRESHED')[0].session_id);
  const upFail = byEvent(orec, 'AS_UPSTREAM_REFRESH_FAILED')[0];
  assert.deepEqual([upFail.user, upFail.client_id, upFail.result], ['bob', oclient.id, 'error']);
  assert.match(byEvent(orec, 'AS_LOGIN_FAILED')[0].reason, /not allowed/);
  assert.match(byEvent(orec, 'AS_LOGIN_SUCCESS')[0].reason, new RegExp(`upstream identity provider ${idp.issuer}`));

  // One record edited by hand (the user of a successful login) in a copy of the file: caught.
  const lines = (await readFile(stat.auditPath, 'utf8')).split('\n');
  const i = lines.findIndex((l) => l.includes('"event":"AS_LOGIN_SUCCESS"'));
  const edited = lines[i].replace('"user":"alice"', '"user":"mallory"');
  assert.notEqual(edited, lines[i]);
  lines[i] = edited;
  const copy = path.join(stat.dir, 'audit-edited.log');
  await writeFile(copy, lines.join('\n'));
  const bad = await mcpgateCLI(['audit', 'verify', copy], { allowFail: true });
  assert.equal(bad.code, 1, `verify of an edited log: ${bad.stdout}${bad.stderr}`);
  assert.match(bad.stderr, new RegExp(`line ${i + 1} \\(seq \\d+\\): .*hash`));
});
