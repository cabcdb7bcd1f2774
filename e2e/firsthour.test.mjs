// The first hour with mcpgate (issue 12), against the real binary:
//
// - IdP down at start-up: the gateway starts while its upstream OpenID provider (oidc-provider,
//   ./idp.mjs) is not listening, reports not ready and answers sign-ins with a 503 page; once the
//   IdP listens, /readyz turns ready and a sign-in completes within 5 s.
// - Dynamic client registration that real clients survive: the same mcp-remote-style registration
//   50 times from one address, with the default registration cap: no 429, one client.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { startIdP } from './lib/idp.mjs';
import { followAuthorization } from './lib/forms.mjs';
import { pkcePair } from './lib/oauth.mjs';
import { freePort, stopAll } from './lib/proc.mjs';
import {
  authServerYAML,
  authorizeURL,
  cleanupTempDirs,
  hashPassword,
  oidcUpstream,
  registerClient,
  run,
  startDemoBackend,
  startMcpgate,
  staticUpstream,
} from './lib/mcpgate.mjs';

after(async () => {
  await stopAll();
  await cleanupTempDirs();
});

const POLICY = `
policy:
  roles:
    admin: { tools: ["*"] }
  groups:
    mcp-admins: [admin]`;

async function readyz(gw) {
  const res = await fetch(`${gw.base}/readyz`);
  await res.body?.cancel();
  return res.status;
}

test('IdP down at start-up: not ready, 503 sign-in page, then a sign-in within 5 s of the IdP being ready', async () => {
  const idpPort = await freePort();
  const issuer = `http://127.0.0.1:${idpPort}`;
  const demo = await startDemoBackend();
  const gw = await startMcpgate({
    name: 'idp-down',
    config: ({ dir }) => `${authServerYAML({ upstream: oidcUpstream(issuer) })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
  });
  // startMcpgate returned once /healthz answered: the gateway started without its IdP.
  assert.equal(await readyz(gw), 503, 'not ready while the IdP is down');

  const redirectUri = `http://127.0.0.1:${await freePort()}/cb`;
  const reg = await registerClient(gw, { client_name: 'E2E idp-down', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' });
  assert.equal(reg.status, 201);
  const clientId = reg.json.client_id;

  const { challenge } = pkcePair();
  const down = await fetch(authorizeURL(gw, clientId, redirectUri, challenge), { redirect: 'manual' });
  const page = await down.text();
  assert.equal(down.status, 503, 'sign-in while the IdP is down');
  assert.ok(down.headers.get('retry-after'), 'Retry-After');
  assert.match(page, /Sign-in unavailable/);
  assert.match(page, new RegExp(`The identity provider ${issuer} cannot be reached right now`));

  const idp = await startIdP({ port: idpPort });
  const ready = Date.now();
  assert.equal(idp.issuer, issuer);
  const { verifier, challenge: ch2 } = pkcePair();
  const final = await followAuthorization(authorizeURL(gw, clientId, redirectUri, ch2), { redirectUri, username: 'alice', password: 'alice-pw' });
  const code = final.searchParams.get('code');
  const elapsed = Date.now() - ready;
  assert.ok(code, `sign-in after the IdP came back: ${final.href}`);
  assert.ok(elapsed < 5000, `sign-in took ${elapsed} ms after the IdP was ready`);
  const tok = await fetch(`${gw.base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: clientId }),
  });
  assert.equal(tok.status, 200, 'token');
  await tok.body?.cancel();
  assert.equal(await readyz(gw), 200, 'ready once the IdP answers');
  console.log(`# sign-in completed ${elapsed} ms after the IdP was ready`);
  await gw.stop();
  await idp.stop();
  await demo.stop();
});

test('DCR: the same mcp-remote-style registration 50 times from one address: no 429, one client', async () => {
  const demo = await startDemoBackend();
  const hAlice = await hashPassword('alice-pw');
  const gw = await startMcpgate({
    name: 'dcr-dedupe',
    // registration: defaults (the cap under test)
    config: ({ dir }) => `${authServerYAML({ upstream: staticUpstream([{ name: 'alice', groups: ['mcp-admins'], hash: hAlice }]) })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
  });
  // What mcp-remote sends on every start (its callback port is fixed per server URL).
  const meta = {
    client_name: 'MCP CLI Proxy',
    redirect_uris: ['http://localhost:3334/oauth/callback'],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    client_uri: 'https://github.com/modelcontextprotocol/mcp-cli',
    software_id: '2e6dc280-f3c3-4e01-99a7-8181dbd1d23d',
    software_version: '0.1.29',
  };
  const ids = new Set();
  for (let i = 0; i < 50; i++) {
    const r = await registerClient(gw, meta);
    assert.equal(r.status, 201, `registration ${i}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.client_secret, undefined);
    ids.add(r.json.client_id);
  }
  assert.equal(ids.size, 1, `client_ids: ${[...ids]}`);
  const audit = (await readFile(gw.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(audit.filter((r) => r.event === 'AS_CLIENT_REGISTERED').length, 1, 'one registration recorded');
  await gw.stop();
  // One row in the store (sqlite3 CLI, when installed).
  if (existsSync('/usr/bin/sqlite3')) {
    const { stdout } = await run('sqlite3', [`${gw.dir}/mcpgate.db`, "SELECT count(*) FROM clients WHERE kind = 'dynamic'"]);
    assert.equal(stdout.trim(), '1', 'client rows');
  }
  // Another client (other redirect URI) is a second one, not refused.
  await gw.start();
  const other = await registerClient(gw, { ...meta, redirect_uris: ['http://localhost:3335/oauth/callback'] });
  assert.equal(other.status, 201);
  assert.ok(!ids.has(other.json.client_id));
  await gw.stop();
  await demo.stop();
});
