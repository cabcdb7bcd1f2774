// RFC 8693 token exchange (issue 13.3): the real mcpgate binary gives each backend a token that
// a security token service issued for it — the e2e IdP (oidc-provider) with an RFC 8693 grant
// registered (idp.mjs) — and never the client's token or its own. The backend (lib/jwt-backend.mjs,
// official TS SDK) verifies the exchanged JWT with the STS's JWKS, issuer and audience, and accepts
// the call. Two gateways: authorization_server mode (the subject token is the user's upstream
// token, the STS found by discovery) and jwt mode (the subject token is the client's token, the
// token endpoint configured). The cache hit ratio over 1,000 calls by 10 users is printed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { HeadlessOAuthProvider } from './mcp-client.mjs';
import { jwtClaims as claims, steps } from './lib/steps.mjs';
import { startIdP } from './lib/idp.mjs';
import { getUserToken, discover } from './lib/oauth.mjs';
import { startJWTBackend } from './lib/jwt-backend.mjs';
import { stopAll } from './lib/proc.mjs';
import { authServerYAML, buildMcpgate, cleanupTempDirs, oidcUpstream, startMcpgate } from './lib/mcpgate.mjs';

const USERS = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`user${i}`, { groups: ['mcp-admins'] }]));
const POLICY = `
policy:
  roles:
    admin: { tools: ["*"] }
  groups:
    mcp-admins: [admin]
    mcp-readers: [admin]`;
const GENERIC_AUDIENCE = 'https://mcpgate.e2e.test'; // jwt mode: not one backend's URI, valid at every path
const SVC_RESOURCE = 'https://svc.e2e.test/mcp';

let idp;
let db; // the backend that accepts tokens for audience urn:e2e:db
let refused; // a backend whose audience the STS refuses
let svc; // a backend that accepts the gateway's service-account token (client_credentials)
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let as;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let jwtgw;
let tokenEndpoint;

const exchange = (o) => `{ type: token_exchange, ${o}, allow_private_network: true, client_id: mcpgate-sts, client_secret: mcpgate-sts-secret }`;

before(async () => {
  [idp] = await Promise.all([startIdP({ users: USERS }), buildMcpgate()]);
  tokenEndpoint = (await discover(idp.issuer)).token_endpoint;
  [db, refused, svc] = await Promise.all([
    startJWTBackend({ issuer: idp.issuer, audience: 'urn:e2e:db' }),
    startJWTBackend({ issuer: idp.issuer, audience: 'urn:e2e:forbidden' }),
    startJWTBackend({ issuer: idp.issuer, audience: SVC_RESOURCE }),
  ]);
  [as, jwtgw] = await Promise.all([
    startMcpgate({
      name: 'tokex-as',
      config: ({ dir }) => `${authServerYAML({ upstream: oidcUpstream(idp.issuer) })}
metrics: { enabled: true }
${POLICY}
backends:
  - name: db
    url: ${db.url}
    credential: ${exchange(`issuer: '${idp.issuer}', audience: 'urn:e2e:db', resource: 'https://db.example/mcp', scopes: [db.read]`)}
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
    startMcpgate({
      name: 'tokex-jwt',
      config: ({ dir }) => `
shutdown_timeout: 5s
metrics: { enabled: true }
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: ${idp.issuer}
        audience: ${GENERIC_AUDIENCE}
        allow_private_issuer: true
${POLICY}
rate_limit: { enabled: false } # 1,000 calls from one address
backends:
  - name: db
    url: ${db.url}
    credential: ${exchange(`token_endpoint: '${tokenEndpoint}', audience: 'urn:e2e:db', scopes: [db.read]`)}
  - name: forbidden
    path: /forbidden/mcp
    url: ${refused.url}
    credential: ${exchange(`token_endpoint: '${tokenEndpoint}', audience: 'urn:e2e:forbidden'`)}
  - name: svc
    path: /svc/mcp
    url: ${svc.url}
    credential: { type: client_credentials, token_endpoint: '${tokenEndpoint}', allow_private_network: true, client_id: mcpgate-sts,
                  client_secret: mcpgate-sts-secret, resource: '${SVC_RESOURCE}', scopes: [mcp] }
audit: { sink: file, path: ${dir}/audit.log }
`,
    }),
  ]);
});

after(async () => {
  await Promise.all([db?.close(), refused?.close(), svc?.close()]);
  await stopAll();
  await cleanupTempDirs();
});

const stsExchanges = async () => (await (await fetch(`${idp.issuer}/e2e/stats`)).json()).token_exchanges;
const auditRecords = async (gw) =>
  (await readFile(gw.auditPath, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** The backend's view of the calls since `from`: every Authorization header, as JWT claims. */
function tokensSeen(backend, from) {
  return backend.seen.slice(from).map((h) => {
    assert.match(h, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the backend got a JWT bearer token');
    return { raw: h.slice(7), claims: claims(h.slice(7)) };
  });
}

/** counter value of mcpgate_backend_credentials_total for backend and result. */
async function credentialMetric(gw, backend, result) {
  const text = await (await fetch(`${gw.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('mcpgate_backend_credentials_total{') && l.includes(`backend="${backend}"`) && l.includes(`result="${result}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}

function whoami(result) {
  return JSON.parse(result.content[0].text);
}

test('authorization_server: the backend gets a token the STS exchanged for it from the upstream token, never the gateway\'s', async () => {
  const fromSeen = db.seen.length;
  const before = await stsExchanges();
  const oauth = new HeadlessOAuthProvider({ user: 'alice' });
  const r = await steps({
    url: `${as.base}/mcp`,
    oauth,
    steps: [{ op: 'tools/list' }, ...Array.from({ length: 5 }, () => ({ op: 'tools/call', name: 'whoami' }))],
  });
  assert.deepEqual(r.steps[0].result.tools, ['whoami']);
  const me = whoami(r.steps[1].result);
  assert.equal(me.sub, 'alice');
  assert.equal(me.aud, 'urn:e2e:db');
  assert.deepEqual(me.act, { sub: 'mcpgate-sts' });
  assert.equal(me.scope, 'db.read');

  const gatewayToken = oauth.tokens().access_token;
  assert.equal(claims(gatewayToken).iss, as.base, 'the client holds a token mcpgate issued');
  const seen = tokensSeen(db, fromSeen);
  assert.ok(seen.length >= 7, `backend saw ${seen.length} requests`);
  for (const t of seen) {
    assert.notEqual(t.raw, gatewayToken, "the gateway's own token reached the backend");
    assert.equal(t.claims.iss, idp.issuer);
    assert.equal(t.claims.aud, 'urn:e2e:db');
    assert.equal(t.claims.resource, 'https://db.example/mcp');
  }
  assert.equal(db.rejected, 0);
  // Every request of the session used one exchange: the cache.
  assert.equal((await stsExchanges()) - before, 1);
  assert.equal(new Set(seen.map((t) => t.raw)).size, 1);

  const recs = (await auditRecords(as)).filter((x) => x.event === 'BACKEND_CREDENTIAL');
  assert.equal(recs.length, 1, JSON.stringify(recs));
  assert.equal(recs[0].result, 'success');
  assert.equal(recs[0].method, 'token_exchange');
  assert.equal(recs[0].backend, 'db');
  assert.equal(recs[0].subject, 'alice');
  assert.equal(recs[0].session_id, claims(gatewayToken).tsid);
  const log = await readFile(as.auditPath, 'utf8');
  assert.ok(!log.includes(seen[0].raw), 'the exchanged token is in the audit log');
  assert.ok(!log.includes(gatewayToken), 'the client token is in the audit log');
  assert.equal(await credentialMetric(as, 'db', 'exchanged'), 1);
});

test('jwt: the client token is the subject token and never reaches the backend; a refused exchange names the backend', async () => {
  const { access_token: token } = await getUserToken({ issuer: idp.issuer, user: 'bob', resource: GENERIC_AUDIENCE, scope: 'openid mcp' });
  const fromSeen = db.seen.length;
  const r = await steps({ url: `${jwtgw.base}/mcp`, token, steps: [{ op: 'tools/call', name: 'whoami' }] });
  assert.equal(whoami(r.steps[0].result).sub, 'bob');
  for (const t of tokensSeen(db, fromSeen)) {
    assert.notEqual(t.raw, token, "the client's token reached the backend");
    assert.equal(t.claims.aud, 'urn:e2e:db');
  }

  // The STS refuses this audience (invalid_target): 403, a JSON-RPC error that names the backend
  // and says nothing of the STS's words; the backend is never called.
  const res = await fetch(`${jwtgw.base}/forbidden/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
  });
  assert.equal(res.status, 403);
  const body = await res.json();
  assert.deepEqual(body, {
    jsonrpc: '2.0',
    id: 9,
    error: { code: -32603, message: 'backend forbidden: could not get a credential: the security token service refused it for this user' },
  });
  assert.equal(refused.seen.length, 0);
  const recs = (await auditRecords(jwtgw)).filter((x) => x.event === 'BACKEND_CREDENTIAL' && x.backend === 'forbidden');
  assert.equal(recs.length, 1);
  assert.equal(recs[0].result, 'error');
  assert.match(recs[0].reason, /invalid_target/);
  assert.ok(!(await readFile(jwtgw.auditPath, 'utf8')).includes(token), 'the client token is in the audit log');
});

test('jwt: cache hit ratio over 1,000 calls by 10 users', async () => {
  const tokens = [];
  for (const name of Object.keys(USERS)) {
    tokens.push((await getUserToken({ issuer: idp.issuer, user: name, resource: GENERIC_AUDIENCE, scope: 'openid mcp' })).access_token);
  }
  const [hits0, ex0, sts0] = [await credentialMetric(jwtgw, 'db', 'cache_hit'), await credentialMetric(jwtgw, 'db', 'exchanged'), await stsExchanges()];
  const call = async (i) => {
    const res = await fetch(`${jwtgw.base}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens[i % tokens.length]}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(JSON.parse(body.result.content[0].text).sub, `user${i % tokens.length}`);
  };
  const N = 1000;
  let next = 0;
  // 10 callers at once, each taking the next call: the users' first calls race for the exchange.
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (next < N) await call(next++);
  }));
  const hits = (await credentialMetric(jwtgw, 'db', 'cache_hit')) - hits0;
  const exchanged = (await credentialMetric(jwtgw, 'db', 'exchanged')) - ex0;
  const atSTS = (await stsExchanges()) - sts0;
  console.log(`token exchange cache: ${N} calls by ${tokens.length} users: ${exchanged} exchanges (${atSTS} at the STS), ${hits} hits, hit ratio ${(hits / N).toFixed(3)}`);
  assert.equal(exchanged, tokens.length);
  assert.equal(atSTS, tokens.length);
  assert.equal(hits, N - tokens.length);
});

test('jwt: client_credentials gives every user the one service-account token, obtained once', async () => {
  const from = svc.seen.length;
  const tokens = [];
  for (const user of ['alice', 'bob']) {
    const { access_token: token } = await getUserToken({ issuer: idp.issuer, user, resource: GENERIC_AUDIENCE, scope: 'openid mcp' });
    tokens.push(token);
    const r = await steps({ url: `${jwtgw.base}/svc/mcp`, token, steps: [{ op: 'tools/call', name: 'whoami' }] });
    assert.equal(whoami(r.steps[0].result).sub, 'mcpgate-sts', 'the service account, not the user');
  }
  const seen = tokensSeen(svc, from);
  assert.equal(new Set(seen.map((t) => t.raw)).size, 1, 'one service token for both users');
  for (const t of seen) {
    assert.ok(!tokens.includes(t.raw), "the client's token reached the backend");
    assert.equal(t.claims.aud, SVC_RESOURCE);
  }
  assert.equal(svc.rejected, 0);
  assert.equal(await credentialMetric(jwtgw, 'svc', 'exchanged'), 1);
  const recs = (await auditRecords(jwtgw)).filter((x) => x.event === 'BACKEND_CREDENTIAL' && x.backend === 'svc');
  assert.equal(recs.length, 1);
  assert.equal(recs[0].method, 'client_credentials');
});
