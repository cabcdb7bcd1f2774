// Several replicas (issue 14): two real `mcpgate serve` processes on one real PostgreSQL, behind a
// round-robin proxy with no stickiness (lib/rrproxy.mjs, the replicas' public_url), built-in users.
// The official TS SDK client registers and signs in through A, calls tools through B, refreshes
// through A, and its MCP session goes on across both; another user's use of that session id is 404
// on either replica; a revocation through B is refused on A within the documented second; after
// `mcpgate keys rotate`, a token signed by the new key is accepted on B at once; the shared
// limiter (rate_limit.shared.store: postgres) holds a per-user limit across both within 10%.
// Skipped without MCPGATE_TEST_POSTGRES_DSN (scripts/test.sh sets it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { HeadlessOAuthProvider } from './mcp-client.mjs';
import { stopAll } from './lib/proc.mjs';
import { buildMcpgate, cleanupTempDirs, hashPassword, mcpgateCLI, randomKey, startDemoBackend, startMcpgate } from './lib/mcpgate.mjs';
import { startRoundRobinProxy } from './lib/rrproxy.mjs';
import { createSchema, postgresMissing } from './lib/postgres.mjs';

const skip = postgresMissing() || false; // node:test skips on any string, '' included
if (skip && process.env.MCPGATE_E2E_REQUIRED === '1') throw new Error(`replicas.test.mjs: ${skip}`);

// Per user, shared by both replicas: a burst of 40, then 5 a second.
const LIMIT = { rps: 5, burst: 40 };
const PROTOCOL = '2025-06-18';

let schema;
let lb;
/** @type {import('./lib/mcpgate.mjs').Gateway[]} */ let gws = [];
const A = 0;
const B = 1;
/** alice's SDK client, session and provider, from the first test. */
let alice;

before(async () => {
  if (skip) return;
  const [demo, hashes, s] = await Promise.all([
    (async () => (await buildMcpgate(), startDemoBackend()))(),
    Promise.all(['alice-pw', 'bob-pw', 'carol-pw', 'dave-pw'].map(hashPassword)),
    createSchema(),
  ]);
  schema = s;
  lb = await startRoundRobinProxy([]);
  const key = randomKey();
  const users = ['alice', 'bob', 'carol', 'dave']
    .map((u, i) => `        - { username: ${u}, email: ${u}@example.test, groups: [mcp-admins], password_hash: "${hashes[i]}" }`)
    .join('\n');
  const config = () => `
encryption_key: ${key}
shutdown_timeout: 2s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    # A warm grant cache would trust a revoked grant this long: only the notification can beat it.
    revocation_cache_ttl: 1m
    rate_limit: { per_ip: { rps: 100, burst: 1000 } }
    upstream:
      type: static
      users:
${users}
policy:
  roles: { admin: { tools: ["*"] } }
  groups: { mcp-admins: [admin] }
backends:
  - name: demo
    url: ${demo.url}
rate_limit:
  per_ip: { rps: 1000, burst: 1000 }
  per_user: { rps: ${LIMIT.rps}, burst: ${LIMIT.burst} }
  shared: { store: postgres }
store: { driver: postgres, dsn: "${schema.dsn}" }
`;
  // One after the other: the first creates the tables.
  for (const name of ['replica-a', 'replica-b']) {
    const gw = await startMcpgate({ name, config, publicUrl: lb.base });
    gws.push(gw);
    lb.targets.push(`127.0.0.1:${gw.port}`);
  }
});

after(async () => {
  await alice?.client.close().catch(() => {});
  await lb?.close();
  await stopAll();
  await schema?.drop();
  await cleanupTempDirs();
});

/** An SDK client through the proxy that signs `user` in (registration, login, consent, token) and initializes. */
async function connect(user) {
  const oauth = new HeadlessOAuthProvider({ user });
  const url = new URL(`${lb.base}/mcp`);
  let transport = new StreamableHTTPClientTransport(url, { authProvider: oauth });
  let client = new Client({ name: 'replicas-e2e', version: '1.0.0' }, { capabilities: {} });
  try {
    await client.connect(transport);
  } catch (err) {
    const code = err instanceof UnauthorizedError ? oauth.takeCode() : undefined;
    if (!code) throw err;
    await transport.finishAuth(code);
    transport = new StreamableHTTPClientTransport(url, { authProvider: oauth }); // a failed connect closes its transport
    client = new Client({ name: 'replicas-e2e', version: '1.0.0' }, { capabilities: {} });
    await client.connect(transport);
  }
  return { oauth, client, transport, url };
}

/** One raw MCP POST through the proxy: status and body. */
async function mcp(token, body, sessionId) {
  const res = await fetch(`${lb.base}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL,
      ...(sessionId && { 'mcp-session-id': sessionId }),
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, sessionId: res.headers.get('mcp-session-id'), text: await res.text() };
}

const call = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'list_vms', arguments: {} } });

/** The proxy's log entries from index `from` on. */
const since = (from) => lb.log.slice(from);

const kid = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8')).kid;

test('the SDK client registers and signs in through A, calls tools through B, refreshes through A; its session goes on across replicas', { skip }, async () => {
  lb.pin(A);
  let mark = lb.log.length;
  alice = await connect('alice');
  const sid = alice.transport.sessionId;
  assert.ok(sid, 'no Mcp-Session-Id');
  assert.equal(alice.oauth.events.registrations, 1);
  assert.equal(alice.oauth.events.authorizations, 1);
  const signIn = since(mark);
  for (const p of ['/register', '/authorize', '/login', '/token', '/mcp']) {
    assert.ok(signIn.some((e) => e.path === p), `no ${p} through A`);
  }
  assert.ok(signIn.every((e) => e.target === A));

  lb.pin(B);
  mark = lb.log.length;
  for (let i = 0; i < 2; i++) {
    const r = await alice.client.callTool({ name: 'list_vms', arguments: {} });
    assert.match(JSON.stringify(r.content), /prod-db/);
  }
  const calls = since(mark).filter((e) => e.method === 'POST' && e.path === '/mcp');
  assert.equal(calls.length, 2);
  assert.ok(calls.every((e) => e.target === B && e.sessionId === sid && e.status === 200), JSON.stringify(calls));

  lb.pin(A);
  mark = lb.log.length;
  const before = alice.oauth.tokens();
  assert.equal(await auth(alice.oauth, { serverUrl: alice.url }), 'AUTHORIZED');
  const after = alice.oauth.tokens();
  assert.notEqual(after.access_token, before.access_token);
  assert.notEqual(after.refresh_token, before.refresh_token);
  assert.equal(alice.oauth.events.authorizations, 1, 'the refresh needed a new sign-in');
  const tokenCalls = since(mark).filter((e) => e.path === '/token');
  assert.equal(tokenCalls.length, 1);
  assert.equal(tokenCalls[0].target, A);
  assert.equal(tokenCalls[0].status, 200);

  // No stickiness: the same session, with the refreshed token, on both replicas in turn.
  lb.pin(null);
  mark = lb.log.length;
  for (let i = 0; i < 4; i++) {
    const r = await alice.client.callTool({ name: 'list_vms', arguments: {} });
    assert.match(JSON.stringify(r.content), /prod-db/);
  }
  assert.equal(alice.transport.sessionId, sid);
  const rr = since(mark).filter((e) => e.method === 'POST' && e.path === '/mcp');
  assert.equal(rr.length, 4);
  assert.deepEqual(new Set(rr.map((e) => e.target)), new Set([A, B]));
  assert.ok(rr.every((e) => e.sessionId === sid && e.status === 200), JSON.stringify(rr));
});

test("bob presenting alice's Mcp-Session-Id gets 404 on either replica", { skip }, async () => {
  assert.ok(alice, 'needs the first test');
  const sid = alice.transport.sessionId;
  lb.pin(null);
  const bob = await connect('bob');
  const bobToken = bob.oauth.tokens().access_token;
  await bob.client.close();
  for (const target of [A, B]) {
    lb.pin(target);
    const r = await mcp(bobToken, call(7), sid);
    assert.equal(r.status, 404, `bob with alice's session on replica ${target}: ${r.status} ${r.text}`);
    // alice herself, same replica: the session is there.
    const own = await mcp(alice.oauth.tokens().access_token, call(8), sid);
    assert.equal(own.status, 200, own.text);
  }
  lb.pin(null);
});

test('a revocation through B is refused on A within the documented second', { skip }, async () => {
  assert.ok(alice, 'needs the first test');
  const sid = alice.transport.sessionId;
  const token = alice.oauth.tokens().access_token;
  lb.pin(A);
  assert.equal((await mcp(token, call(9), sid)).status, 200, 'A before the revocation'); // A's cache is warm
  lb.pin(B);
  const rv = await fetch(`${lb.base}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: alice.oauth.clientInformation().client_id }),
  });
  assert.equal(rv.status, 200);
  const start = performance.now();
  lb.pin(A);
  let refusedAfter;
  for (let i = 0; ; i++) {
    const r = await mcp(token, call(10 + i), sid);
    if (r.status === 401) {
      refusedAfter = performance.now() - start;
      break;
    }
    assert.equal(r.status, 200);
    assert.ok(performance.now() - start < 5000, 'A still accepts the token 5 s after its revocation through B');
    await new Promise((r) => setTimeout(r, 5));
  }
  lb.pin(null);
  console.log(`# revoked through B, refused on A after ${refusedAfter.toFixed(0)} ms`);
  assert.ok(refusedAfter <= 1000, `refused on A after ${refusedAfter} ms; documented bound 1 s`);
});

test('after `mcpgate keys rotate` on A, a token signed by the new key is accepted on B at once', { skip }, async () => {
  lb.pin(null);
  const carol = await connect('carol');
  await carol.client.close();
  // Twice: the new active key is one B has never seen published.
  let active;
  for (let i = 0; i < 2; i++) {
    const { stdout } = await mcpgateCLI(['keys', 'rotate', '--config', gws[A].configPath]);
    active = /active (\S+)/.exec(stdout)?.[1];
  }
  assert.ok(active, 'keys rotate named no active key');
  lb.pin(A);
  const deadline = performance.now() + 5000;
  for (;;) {
    assert.equal(await auth(carol.oauth, { serverUrl: carol.url }), 'AUTHORIZED');
    if (kid(carol.oauth.tokens().access_token) === active) break;
    assert.ok(performance.now() < deadline, 'A did not sign with the rotated key within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  lb.pin(B);
  const init = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'replicas-e2e', version: '1' } },
  };
  const r = await mcp(carol.oauth.tokens().access_token, init);
  lb.pin(null);
  assert.equal(r.status, 200, `a token signed by the new key on B: ${r.status} ${r.text}`);
});

test('the shared limiter holds a per-user limit across both replicas within 10%', { skip }, async () => {
  // dave's bucket is full: nobody else signs in as dave. Every authenticated MCP request of his
  // counts, the SDK's initialize and GET stream included (401s are before authentication).
  lb.pin(null);
  const mark = lb.log.length;
  const u = await connect('dave');
  const token = u.oauth.tokens().access_token;
  const sid = u.transport.sessionId;
  for (let i = 0; i < 4 * LIMIT.burst; i++) {
    const r = await mcp(token, call(100 + i), sid);
    assert.ok(r.status === 200 || r.status === 429, `${r.status} ${r.text}`);
  }
  await u.client.close();
  const counted = since(mark).filter((e) => e.path === '/mcp' && e.status !== 401);
  const allowed = counted.filter((e) => e.status !== 429);
  const perReplica = [A, B].map((t) => allowed.filter((e) => e.target === t).length);
  const elapsed = (counted.at(-1).t - counted[0].t) / 1000;
  const expected = LIMIT.burst + LIMIT.rps * elapsed;
  console.log(`# ${counted.length} requests in ${elapsed.toFixed(2)} s: ${allowed.length} allowed (A ${perReplica[0]}, B ${perReplica[1]}); the limit allows ${expected.toFixed(1)}`);
  assert.ok(counted.length > 2 * expected, 'the load did not exceed the limit');
  assert.ok(perReplica[0] > LIMIT.burst / 4 && perReplica[1] > LIMIT.burst / 4, 'both replicas allowed calls');
  assert.ok(Math.abs(allowed.length - expected) <= 0.1 * expected, `${allowed.length} allowed, the limit allows ${expected.toFixed(1)} (±10%)`);
});
