// An aggregated endpoint (issue 13): one URL of mcpgate in front of three backends of three kinds —
// @modelcontextprotocol/server-everything over stdio (a child per session), the go-sdk demo server
// over HTTP, and the go-sdk conformance server over HTTP — driven by the official TypeScript SDK
// client with IdP tokens (auth.mode jwt, oidc-provider). Tools are prefixed with the backend name,
// filtered per user by per-backend grants, called on every backend; server-everything's progress
// notifications and its sampling request go through the aggregate; the demo backend killed
// mid-session leaves the others working, and it rejoins after a restart on the same session.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startIdP } from './lib/idp.mjs';
import { everythingEntry } from './lib/everything.mjs';
import { getUserToken } from './lib/oauth.mjs';
import { freePort, startProcess, stopAll, stopProcess, waitForHttp } from './lib/proc.mjs';
import { buildMcpgate, cleanupTempDirs, run, startMcpgate, tempDir, REPO_ROOT } from './lib/mcpgate.mjs';
import path from 'node:path';

let idp;
let gw;
let demo; // {port, proc}
let url;

/** Starts the go-sdk demo backend on port (fixed, so that a restart comes back at the same URL). */
async function startDemo(port) {
  const bin = await buildMcpgate();
  const proc = startProcess(bin, ['demo-backend', '--listen', `127.0.0.1:${port}`], { name: 'demo-backend' });
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/mcp`, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return proc;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`demo-backend did not answer: ${err.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

before(async () => {
  const demoPort = await freePort();
  const confBin = path.join(await tempDir('mcpgate-agg-gosdk-'), 'everything-server');
  const [i, demoProc, , confPort] = await Promise.all([
    startIdP(),
    startDemo(demoPort),
    run('go', ['build', '-o', confBin, 'github.com/modelcontextprotocol/go-sdk/conformance/everything-server'], { cwd: REPO_ROOT }),
    freePort(),
  ]);
  idp = i;
  demo = { port: demoPort, proc: demoProc };
  const conf = startProcess(confBin, ['-http', `127.0.0.1:${confPort}`, '-stateless=false'], { name: 'gosdk-server' });
  await waitForHttp(`http://127.0.0.1:${confPort}/mcp`, { proc: conf, timeoutMs: 20000 });
  gw = await startMcpgate({
    name: 'aggregate',
    config: ({ base, dir }) => `
shutdown_timeout: 5s
auth:
  mode: jwt
  jwt:
    issuers:
      - { issuer: ${idp.issuer}, audience: ${base}/mcp, allow_private_issuer: true }
  scopes_supported: [mcp:tools]
policy:
  roles:
    reader:
      backends:
        demo: { tools: ["get_*", "list_*"] }
        everything: { tools: ["echo", "get-sum"] }
        gosdk: { tools: ["test_simple_text"] }
    admin:
      tools: ["*"]
      prompts: ["*"]
      resources: ["*"]
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]
backends:
  - name: demo
    url: http://127.0.0.1:${demoPort}/mcp
  - name: everything
    command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(everythingEntry())}, stdio]
  - name: gosdk
    url: http://127.0.0.1:${confPort}/mcp
endpoints:
  - path: /mcp
    backends: [demo, everything, gosdk]
    timeout: 3s
audit: { sink: file, path: ${dir}/audit.log }
`,
  });
  url = `${gw.base}/mcp`;
});

after(async () => {
  await stopAll();
  await cleanupTempDirs();
});

async function token(user) {
  return (await getUserToken({ issuer: idp.issuer, user, resource: url, scope: 'openid groups mcp:tools' })).access_token;
}

/** A TS SDK client on the aggregate; sampling answered by upper-casing the prompt. */
async function connect(user) {
  const client = new Client({ name: 'mcpgate-e2e-aggregate', version: '1.0.0' }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
    model: 'e2e-model',
    role: 'assistant',
    content: { type: 'text', text: `SAMPLED: ${req.params.messages[0].content.text.toUpperCase()}` },
  }));
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${await token(user)}` } } });
  await client.connect(transport);
  return client;
}

async function allTools(client) {
  const out = [];
  let cursor;
  do {
    const r = await client.listTools(cursor ? { cursor } : {});
    out.push(...r.tools.map((t) => t.name));
    cursor = r.nextCursor;
  } while (cursor);
  return out.sort();
}

const text = (r) => (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

test('aggregate: prefixed tools filtered per user, a call on every backend, audit with backend and original name', async () => {
  const alice = await connect('alice');
  const bob = await connect('bob');
  try {
    const a = await allTools(alice);
    for (const t of ['demo__delete_vm', 'demo__get_vm', 'everything__echo', 'everything__trigger-long-running-operation', 'gosdk__test_simple_text']) {
      assert.ok(a.includes(t), `alice sees ${t} in ${a}`);
    }
    assert.ok(a.every((n) => /^(demo|everything|gosdk)__/.test(n)), `every name prefixed: ${a}`);
    assert.deepEqual(await allTools(bob), ['demo__get_vm', 'demo__list_vms', 'everything__echo', 'everything__get-sum', 'gosdk__test_simple_text']);

    assert.match(text(await bob.callTool({ name: 'demo__get_vm', arguments: { vm_name: 'web-1' } })), /web-1: poweredOn/);
    assert.match(text(await bob.callTool({ name: 'everything__echo', arguments: { message: 'through the aggregate' } })), /through the aggregate/);
    assert.ok(text(await bob.callTool({ name: 'gosdk__test_simple_text', arguments: {} })).length > 0);
    await assert.rejects(bob.callTool({ name: 'demo__delete_vm', arguments: { vm_name: 'web-1' } }), /delete_vm/);
  } finally {
    await Promise.all([alice.close(), bob.close()]);
  }
  const records = (await readFile(gw.auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  const calls = records.filter((r) => r.method === 'tools/call' && r.event !== 'FORWARD' && r.user === 'bob');
  const seen = calls.map((r) => `${r.backend}/${r.tool}/${r.decision}`);
  for (const want of ['demo/get_vm/allow', 'everything/echo/allow', 'gosdk/test_simple_text/allow', 'demo/delete_vm/deny']) {
    assert.ok(seen.includes(want), `audit has ${want}: ${seen}`);
  }
});

test('aggregate: server-everything progress notifications and its sampling request go through', async () => {
  const alice = await connect('alice');
  try {
    const progress = [];
    const res = await alice.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } }, undefined, {
      onprogress: (p) => progress.push([p.progress, p.total]),
      timeout: 30000,
    });
    assert.match(text(res), /Long running operation completed/);
    assert.deepEqual(progress, [[1, 3], [2, 3], [3, 3]]);

    const s = await alice.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hello backend', maxTokens: 20 } }, undefined, { timeout: 30000 });
    // The backend quotes the answer our client gave to its sampling request.
    assert.match(JSON.stringify(s.content), /SAMPLED: [^"]*HELLO BACKEND/);
  } finally {
    await alice.close();
  }
});

test('aggregate: a backend killed mid-session leaves the others working and rejoins after a restart', async () => {
  const alice = await connect('alice');
  try {
    assert.match(text(await alice.callTool({ name: 'demo__get_vm', arguments: { vm_name: 'web-1' } })), /web-1/);
    await stopProcess(demo.proc);
    const err = await alice.callTool({ name: 'demo__get_vm', arguments: { vm_name: 'web-1' } }).then(
      (r) => assert.fail(`call to the dead backend answered ${JSON.stringify(r)}`),
      (e) => e,
    );
    assert.match(err.message, /backend demo unavailable/);
    const during = await allTools(alice);
    assert.ok(!during.some((n) => n.startsWith('demo__')), `demo's tools left out while it is down: ${during}`);
    assert.ok(during.includes('everything__echo') && during.includes('gosdk__test_simple_text'));
    assert.match(text(await alice.callTool({ name: 'everything__echo', arguments: { message: 'still here' } })), /still here/);

    demo.proc = await startDemo(demo.port);
    assert.match(text(await alice.callTool({ name: 'demo__get_vm', arguments: { vm_name: 'web-1' } })), /web-1/);
    assert.ok((await allTools(alice)).includes('demo__get_vm'), 'demo rejoined the list');
  } finally {
    await alice.close();
  }
});
