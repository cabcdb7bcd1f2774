// The internal token endpoint (docs/internal-endpoint.md) end to end: certificates from
// `mcpgate certs init` (its printed internal_endpoint section used as written, on a free port), a
// real oidc-provider login of bob through the authorization server, then the backend's workload
// exchanges bob's mcpgate access token over mTLS for his upstream access token, which the IdP's
// userinfo endpoint accepts. Without a client certificate there is no TLS session; with a
// certificate the endpoint refuses another backend's token; the public listener does not serve the
// path; the retrieval is in the audit log without a token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { startIdP } from './lib/idp.mjs';
import { followAuthorization } from './lib/forms.mjs';
import { pkcePair } from './lib/oauth.mjs';
import { freePort, stopAll } from './lib/proc.mjs';
import {
  authServerYAML,
  authorizeURL,
  buildMcpgate,
  cleanupTempDirs,
  mcpgateCLI,
  oidcUpstream,
  registerClient,
  startDemoBackend,
  startMcpgate,
  tempDir,
} from './lib/mcpgate.mjs';

let idp, demo, gw, certsDir, internalPort;

before(async () => {
  [idp, demo] = await Promise.all([startIdP(), (async () => (await buildMcpgate(), startDemoBackend()))()]);
  certsDir = path.join(await tempDir('mcpgate-e2e-certs-'), 'certs');
  const { stdout } = await mcpgateCLI(['certs', 'init', '--dir', certsDir, '--trust-domain', 'example.org', '--backend', 'demo', '--backend', 'other']);
  internalPort = await freePort();
  const section = stdout.slice(stdout.indexOf('internal_endpoint:'), stdout.indexOf('\nA backend')).replace('listen: 127.0.0.1:8443', `listen: 127.0.0.1:${internalPort}`);
  assert.match(section, /spiffe_id: spiffe:\/\/example.org\/backend\/demo/);
  gw = await startMcpgate({
    name: 'internal',
    config: ({ dir }) => `${authServerYAML({ upstream: oidcUpstream(idp.issuer) })}
policy:
  roles: { reader: { tools: ["list_*", "get_*"] } }
  groups: { mcp-readers: [reader] }
backends:
  - { name: demo, path: /mcp, url: ${demo.url} }
  - { name: other, path: /other, url: ${demo.url} }
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
${section}
`,
  });
});

after(async () => {
  await stopAll();
  await cleanupTempDirs();
});

/** bob signs in (oidc-provider login page, over HTTP) for resource; returns his token response. */
async function login(resource) {
  const redirectUri = `http://127.0.0.1:${await freePort()}/cb`;
  const { json: reg } = await registerClient(gw, { client_name: 'E2E internal', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' });
  const { verifier, challenge } = pkcePair();
  const final = await followAuthorization(authorizeURL(gw, reg.client_id, redirectUri, challenge, { resource }), { redirectUri, username: 'bob', password: 'bob-pw' });
  const code = final.searchParams.get('code');
  assert.ok(code, `no code: ${final}`);
  const res = await fetch(`${gw.base}/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: reg.client_id, resource }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/** POSTs an RFC 8693 request to the internal endpoint as backend `as` (undefined: no client certificate). */
async function retrieve(as, subjectToken, audience) {
  const ca = await readFile(path.join(certsDir, 'ca.crt'));
  const opts = { ca, servername: 'localhost' };
  if (as) {
    opts.cert = await readFile(path.join(certsDir, `client-${as}.crt`));
    opts.key = await readFile(path.join(certsDir, `client-${as}.key`));
  }
  const body = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience,
  }).toString();
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: internalPort, path: '/internal/token', method: 'POST', ...opts,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a backend retrieves its user\'s upstream token over mTLS', async () => {
  const tok = await login(`${gw.base}/mcp`);
  const r = await retrieve('demo', tok.access_token, 'demo');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  assert.equal(r.json.token_type, 'Bearer');
  assert.ok(r.json.expires_in > 0);
  assert.notEqual(r.json.access_token, tok.access_token);
  // It is bob's token at the IdP: the IdP's userinfo endpoint accepts it.
  const me = await fetch(`${idp.issuer}/me`, { headers: { authorization: `Bearer ${r.json.access_token}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).sub, 'bob');

  // Another backend's workload cannot use bob's demo token, nor can demo ask for "other".
  const cross = await retrieve('other', tok.access_token, 'other');
  assert.equal(cross.status, 400);
  assert.equal(cross.json.error, 'invalid_request');
  const wrong = await retrieve('demo', tok.access_token, 'other');
  assert.equal(wrong.status, 400);
  assert.equal(wrong.json.error, 'invalid_target');
  // No client certificate: no TLS session.
  await assert.rejects(retrieve(undefined, tok.access_token, 'demo'));
  // The public listener does not serve it.
  const pub = await fetch(`${gw.base}/internal/token`, { method: 'POST', body: new URLSearchParams({ subject_token: tok.access_token }) });
  assert.equal(pub.status, 404);

  // Audited, without a token.
  const lines = (await readFile(gw.auditPath, 'utf8')).trim().split('\n');
  for (const l of lines) {
    assert.ok(!l.includes(r.json.access_token) && !l.includes(tok.access_token), 'a token is in the audit log');
  }
  const recs = lines.map((l) => JSON.parse(l)).filter((x) => x.source === 'internal');
  const ok = recs.filter((x) => x.event === 'INTERNAL_TOKEN_RETRIEVED');
  assert.equal(ok.length, 1);
  assert.equal(ok[0].workload, 'spiffe://example.org/backend/demo');
  assert.equal(ok[0].backend, 'demo');
  assert.ok(ok[0].session_id);
  // The two refused requests (the refused handshake's record may still be on its way).
  assert.ok(recs.filter((x) => x.event === 'INTERNAL_TOKEN_REFUSED' && x.workload).length >= 2);
});
