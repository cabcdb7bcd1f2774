// Tests of mcp-client.mjs against @modelcontextprotocol/server-everything: bearer-token mode and
// forced protocol versions directly, and the OAuth mode through a stand-in protected resource
// (lib/fake-resource.mjs) whose authorization server is the e2e IdP. Run: node --test

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startEverything } from './lib/everything.mjs';
import { startIdP } from './lib/idp.mjs';
import { startFakeResource } from './lib/fake-resource.mjs';
import { HeadlessOAuthProvider, runSteps, SUPPORTED_PROTOCOL_VERSIONS } from './mcp-client.mjs';

const CLI = fileURLToPath(new URL('./mcp-client.mjs', import.meta.url));
const execFileP = promisify(execFile);

/** Runs the CLI; resolves to {code, report, stderr} whatever the exit status. */
async function cli(args) {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, ...args]);
    return { code: 0, report: JSON.parse(stdout), stderr };
  } catch (err) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, report: err.stdout ? JSON.parse(err.stdout) : undefined, stderr: err.stderr };
  }
}

describe('mcp-client.mjs with --token against server-everything', () => {
  let ev;
  before(async () => {
    ev = await startEverything();
  });
  after(() => ev?.stop());

  test('initialize, tools/list, tools/call and an expected tool error', async () => {
    const steps = [
      { op: 'initialize' },
      { op: 'tools/list' },
      { op: 'tools/call', name: 'echo', args: { message: 'hello' } },
      { op: 'expect-error', step: { op: 'tools/call', name: 'no-such-tool' }, match: 'not found' },
      { op: 'ping' },
    ];
    const { code, report, stderr } = await cli(['--url', ev.url, '--token', 'opaque-test-token', '--protocol-version', '2025-06-18', '--steps', JSON.stringify(steps)]);
    assert.equal(code, 0, stderr);
    assert.equal(report.ok, true);
    assert.equal(report.protocolVersion, '2025-06-18');
    assert.deepEqual(
      report.steps.map((s) => [s.op, s.ok]),
      steps.map((s) => [s.op, true]),
    );
    assert.equal(report.steps[0].result.serverInfo.name, 'mcp-servers/everything');
    assert.ok(report.steps[0].result.sessionId, 'session id');
    assert.ok(report.steps[1].result.tools.includes('echo'));
    assert.deepEqual(report.steps[2].result.content, [{ type: 'text', text: 'Echo: hello' }]);
    assert.equal(report.steps[3].result.error.isError, true);
  });

  for (const version of ['2025-03-26', '2025-06-18', '2025-11-25']) {
    test(`--protocol-version ${version} is negotiated`, async () => {
      const report = await runSteps({ url: ev.url, protocolVersion: version, steps: [{ op: 'initialize' }, { op: 'tools/list' }] });
      assert.equal(report.ok, true, JSON.stringify(report.steps));
      assert.equal(report.protocolVersion, version);
      assert.equal(report.steps[0].result.protocolVersion, version);
    });
  }

  test('the SDK supports the protocol versions the gateway must serve, except 2026-07-28', () => {
    for (const v of ['2025-03-26', '2025-06-18', '2025-11-25']) assert.ok(SUPPORTED_PROTOCOL_VERSIONS.includes(v), v);
    assert.equal(SUPPORTED_PROTOCOL_VERSIONS.includes('2026-07-28'), false);
  });

  test('a failing step exits 1, reports the error and stops', async () => {
    const steps = [{ op: 'tools/list' }, { op: 'expect-error', step: { op: 'tools/call', name: 'echo', args: { message: 'x' } } }, { op: 'ping' }];
    const { code, report, stderr } = await cli(['--url', ev.url, '--steps', JSON.stringify(steps)]);
    assert.equal(code, 1);
    assert.equal(report.ok, false);
    assert.equal(report.steps.length, 2, 'stops after the failure');
    assert.match(report.steps[1].error.message, /expected an error/);
    assert.match(stderr, /step 2 \(expect-error\) failed/);
  });

  test('an expect-error whose criteria do not match fails', async () => {
    const steps = [{ op: 'expect-error', step: { op: 'tools/call', name: 'no-such-tool' }, status: 403 }];
    const { code, report } = await cli(['--url', ev.url, '--steps', JSON.stringify(steps)]);
    assert.equal(code, 1);
    assert.match(report.steps[0].error.message, /status undefined != 403/);
  });

  test('HTTP errors carry their status', async () => {
    const url = ev.url.replace(/\/mcp$/, '/elsewhere');
    const { code, report } = await cli(['--url', url, '--steps', '[{"op":"expect-error","step":{"op":"initialize"},"status":404}]']);
    assert.equal(code, 0);
    assert.equal(report.steps[0].result.error.status, 404);
  });

  test('bad usage exits 2', async () => {
    for (const args of [['--url', ev.url], ['--url', ev.url, '--steps', '{}'], ['--url', ev.url, '--oauth', '--steps', '[]']]) {
      const { code, stderr } = await cli(args);
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, /^mcp-client: /);
    }
  });
});

describe('mcp-client.mjs OAuth mode (headless login at the e2e IdP)', () => {
  let idp;
  let ev;
  let rs;
  before(async () => {
    [idp, ev] = await Promise.all([startIdP(), startEverything()]);
    rs = await startFakeResource({ issuer: idp.issuer, upstream: ev.url });
  });
  after(async () => {
    await rs?.stop();
    await Promise.all([idp?.stop(), ev?.stop()]);
  });

  test('without a token the resource answers 401', async () => {
    const { code, report } = await cli(['--url', rs.url, '--steps', '[{"op":"expect-error","step":{"op":"initialize"},"status":401}]']);
    assert.equal(code, 0);
    assert.equal(report.steps[0].result.error.status, 401);
  });

  test('DCR, login, PKCE, resource-bound token, calls, refresh with rotation', async () => {
    const oauth = new HeadlessOAuthProvider({ user: 'alice' });
    const before = rs.subjects.length;
    const report = await runSteps({
      url: rs.url,
      oauth,
      steps: [
        { op: 'initialize' },
        { op: 'tools/call', name: 'echo', args: { message: 'one' } },
        { op: 'refresh' },
        { op: 'tools/call', name: 'echo', args: { message: 'two' } },
      ],
    });
    assert.equal(report.ok, true, JSON.stringify(report.steps.find((s) => !s.ok)));
    assert.deepEqual(report.auth, { registrations: 1, authorizations: 1, tokenSaves: 2 });
    assert.deepEqual(report.steps[2].result, { accessTokenChanged: true, refreshTokenRotated: true });
    assert.deepEqual(report.steps[3].result.content, [{ type: 'text', text: 'Echo: two' }]);
    assert.ok(rs.subjects.length > before);
    assert.ok(rs.subjects.slice(before).every((s) => s === 'alice'));
  });

  test('a pre-registered public client skips registration (CLI)', async () => {
    const steps = [{ op: 'tools/call', name: 'echo', args: { message: 'bob' } }];
    const { code, report, stderr } = await cli(['--url', rs.url, '--oauth', '--user', 'bob', '--client-id', 'e2e-cli', '--redirect-uri', 'http://127.0.0.1:40000/cb', '--steps', JSON.stringify(steps)]);
    assert.equal(code, 0, stderr);
    assert.deepEqual(report.auth, { registrations: 0, authorizations: 1, tokenSaves: 1 });
    assert.equal(rs.subjects.at(-1), 'bob');
  });

  test('a wrong password fails the connection with the login error', async () => {
    const oauth = new HeadlessOAuthProvider({ user: 'carol', password: 'wrong' });
    const report = await runSteps({ url: rs.url, oauth, steps: [{ op: 'initialize' }] });
    assert.equal(report.ok, false);
    assert.match(report.steps[0].error.message, /login rejected.*Invalid username or password/);
  });

  test('refresh without OAuth is a step error', async () => {
    const report = await runSteps({ url: ev.url, steps: [{ op: 'refresh' }] });
    assert.equal(report.ok, false);
    assert.match(report.steps[0].error.message, /refresh needs --oauth/);
  });
});
