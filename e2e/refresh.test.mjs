// Identities are re-checked on refresh (issue 11.1): the real mcpgate binary as authorization
// server, with the e2e OpenID provider (oidc-provider) upstream and with built-in users. A user
// whose groups change gets the new groups in the refreshed access token; a user who is gone
// (removed at the IdP, or from the built-in list before a restart) is refused with invalid_grant
// and the session ends. `mcpgate grants list|revoke` reads the same store.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { jwtClaims as claims, signIn, steps } from './lib/steps.mjs';
import { startIdP } from './lib/idp.mjs';
import { stopAll } from './lib/proc.mjs';
import { READER_ADMIN_POLICY, authServerYAML, buildMcpgate, cleanupTempDirs, hashPassword, mcpgateCLI, oidcUpstream, randomKey, startDemoBackend, startMcpgate, staticUpstream } from './lib/mcpgate.mjs';

const ALL_TOOLS = ['count', 'delete_vm', 'echo', 'get_vm', 'list_vms', 'power_on_vm'];
const READER_TOOLS = ['get_vm', 'list_vms'];
const POLICY = READER_ADMIN_POLICY;

let idp;
let demo;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let as;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let stat;
let staticConfig;

/** The built-in users' part of the static gateway's config. */
function staticYaml(dir, key, users) {
  return `${authServerYAML({ key, as: ['revocation_cache_ttl: 1s'], upstream: staticUpstream(users) })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
`;
}

before(async () => {
  [idp, demo] = await Promise.all([
    startIdP({ admin: true, users: { dave: { groups: ['mcp-admins'] }, erin: { groups: ['mcp-admins'] } } }),
    (async () => (await buildMcpgate(), startDemoBackend()))(),
  ]);
  const [hAlice, hBob] = await Promise.all(['alice-pw', 'bob-pw'].map(hashPassword));
  const staticKey = randomKey();
  staticConfig = (dir, users) => staticYaml(dir, staticKey, users);
  [as, stat] = await Promise.all([
    startMcpgate({
      name: 'as-refresh',
      config: ({ dir }) => `${authServerYAML({ as: ['revocation_cache_ttl: 1s'], upstream: oidcUpstream(idp.issuer) })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
`,
    }),
    startMcpgate({
      name: 'static-refresh',
      config: ({ dir }) =>
        staticConfig(dir, [
          { name: 'alice', groups: ['mcp-admins'], hash: hAlice },
          { name: 'bob', groups: ['mcp-admins'], hash: hBob },
        ]),
    }),
  ]);
  stat.hashes = { alice: hAlice, bob: hBob };
});

after(async () => {
  await stopAll();
  await cleanupTempDirs();
});

/** refresh_token grant as the public client the SDK registered. */
async function refresh(gw, oauth) {
  const meta = await (await fetch(`${gw.base}/.well-known/oauth-authorization-server`)).json();
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: oauth.tokens().refresh_token, client_id: oauth.clientInformation().client_id }),
  });
  return { status: res.status, json: await res.json() };
}


async function toolsWith(gw, token) {
  const r = await steps({ url: `${gw.base}/mcp`, token, steps: [{ op: 'tools/list' }] });
  return [...r.steps[0].result.tools].sort();
}

/** One MCP request with a bearer token: its HTTP status. */
async function mcpStatus(gw, token) {
  const res = await fetch(`${gw.base}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  await res.body?.cancel();
  return res.status;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('as+oidc: groups changed at the IdP reach the refreshed token; a user removed at the IdP is refused and the session ends', async () => {
  const dave = await signIn(as, 'dave');
  const erin = await signIn(as, 'erin');
  assert.deepEqual(dave.tools, ALL_TOOLS);
  assert.deepEqual(erin.tools, ALL_TOOLS);

  // At the IdP: dave is demoted to reader, erin is deleted.
  await idp.setUser('dave', { groups: ['mcp-readers'] });
  await idp.deleteUser('erin');

  const d = await refresh(as, dave.oauth);
  assert.equal(d.status, 200, JSON.stringify(d.json.error_description));
  assert.deepEqual(claims(d.json.access_token).groups, ['mcp-readers']);
  assert.deepEqual(await toolsWith(as, d.json.access_token), READER_TOOLS);

  const e = await refresh(as, erin.oauth);
  assert.equal(e.status, 400);
  assert.equal(e.json.error, 'invalid_grant');
  assert.equal(e.json.access_token, undefined);
  // The grant is ended: erin's access token from before is refused too (revocation_cache_ttl 1s).
  await sleep(1200);
  assert.equal(await mcpStatus(as, erin.oauth.tokens().access_token), 401);

  // grants list shows dave's session with the groups of the last refresh; revoke ends it.
  const list = await mcpgateCLI(['grants', 'list', '--config', as.configPath, '--user', 'dave', '--json']);
  const grants = JSON.parse(list.stdout);
  assert.equal(grants.length, 1);
  assert.deepEqual(grants[0].groups, ['mcp-readers']);
  assert.equal(grants[0].revoked, false);
  const rv = await mcpgateCLI(['grants', 'revoke', '--config', as.configPath, '--user', 'dave']);
  assert.match(rv.stdout, /^1 grants revoked$/m);
  await sleep(1200);
  assert.equal(await mcpStatus(as, d.json.access_token), 401);
  dave.oauth.saveTokens({ ...dave.oauth.tokens(), refresh_token: d.json.refresh_token });
  const after = await refresh(as, dave.oauth);
  assert.equal(after.status, 400);
  assert.equal(after.json.error, 'invalid_grant');
});

test('as+static: after a restart with alice demoted and bob removed, alice refreshes to the new groups and bob is refused', async () => {
  const alice = await signIn(stat, 'alice');
  const bob = await signIn(stat, 'bob');
  assert.deepEqual(alice.tools, ALL_TOOLS);
  assert.deepEqual(bob.tools, ALL_TOOLS);

  // Same store and encryption key, changed user list.
  await stat.stop();
  await writeFile(
    stat.configPath,
    `listen: 127.0.0.1:${stat.port}\npublic_url: ${stat.base}\n${staticConfig(stat.dir, [{ name: 'alice', groups: ['mcp-readers'], hash: stat.hashes.alice }])}`,
  );
  await stat.start();

  const a = await refresh(stat, alice.oauth);
  assert.equal(a.status, 200, JSON.stringify(a.json.error_description));
  assert.deepEqual(claims(a.json.access_token).groups, ['mcp-readers']);
  assert.deepEqual(await toolsWith(stat, a.json.access_token), READER_TOOLS);

  const b = await refresh(stat, bob.oauth);
  assert.equal(b.status, 400);
  assert.equal(b.json.error, 'invalid_grant');
  await sleep(1200);
  assert.equal(await mcpStatus(stat, bob.oauth.tokens().access_token), 401);
  const list = JSON.parse((await mcpgateCLI(['grants', 'list', '--config', stat.configPath, '--user', 'bob', '--json'])).stdout);
  assert.deepEqual(list.map((g) => g.revoked), [true]);
});
