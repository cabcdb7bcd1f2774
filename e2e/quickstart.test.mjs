// The README's quick start, run as a new user would: the sh block under "## Quick start" is read
// from README.md (not copied here) and run as written with sh, in a copy of the repository's files
// (a fresh clone: no .mcpgate/ yet, nothing built). Then both demo users sign in with the official
// TypeScript SDK, and what each one sees is compared with what the generated config's demo policy
// grants (`mcpgate policy explain`) and with what the README says they see. A second run of the
// same block with `--listen 127.0.0.1:<other port>` appended to the quickstart command serves on
// that port, with the state of the first.
//
// Harness, not commands: GOBIN (where `go install` puts mcpgate) is a temp dir put first on PATH,
// and MCPGATE_LISTEN (a documented override) moves the first run off 127.0.0.1:8080, which another
// program on this machine may hold.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { HeadlessOAuthProvider, runSteps } from './mcp-client.mjs';
import { freePort, startProcess, stopAll, stopProcess } from './lib/proc.mjs';
import { REPO_ROOT, cleanupTempDirs, run, tempDir } from './lib/mcpgate.mjs';

// The demo backend's tools (internal/demo): the candidates the policy is asked about.
const DEMO_TOOLS = ['count', 'delete_vm', 'echo', 'get_vm', 'list_vms', 'power_on_vm'];

after(async () => {
  await stopAll();
  await cleanupTempDirs();
});

/** The commands of the first ```sh block after the "## Quick start" heading of README.md. */
function quickStartBlock(readme) {
  const section = readme.split(/^## Quick start$/m)[1];
  assert.ok(section, 'README has a "## Quick start" section');
  const m = section.match(/^```sh\n([\s\S]*?)^```$/m);
  assert.ok(m, 'the Quick start section has a ```sh block');
  return m[1];
}

/** Copies the repository's tracked and unignored files (not e2e/) to a temp dir: a fresh clone. */
async function freshClone() {
  const dir = await tempDir('mcpgate-quickstart-clone-');
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && !f.startsWith('e2e/'));
  for (const f of files) {
    await mkdir(path.join(dir, path.dirname(f)), { recursive: true });
    await copyFile(path.join(REPO_ROOT, f), path.join(dir, f)).catch((err) => {
      if (err.code !== 'ENOENT') throw err; // deleted in the work tree, not yet in git
    });
  }
  return dir;
}

/**
 * Runs `script` with sh -e in `cwd` and waits until the quickstart has printed its summary (the
 * audit line is its last). Returns the process and every stdout line so far.
 */
async function runBlock(script, cwd, env) {
  const lines = [];
  let resolveReady;
  const ready = new Promise((r) => {
    resolveReady = r;
  });
  const proc = startProcess('sh', ['-ec', script], {
    name: 'quick start',
    cwd,
    env,
    onLine: (l) => {
      lines.push(l);
      if (/^\s*audit:/.test(l)) resolveReady();
    },
  });
  let timer;
  try {
    await Promise.race([
      ready,
      proc.exited.then(({ code }) => {
        throw new Error(`the quick start exited (${code}) before it was ready:\n${lines.join('\n')}\n${proc.stderrTail()}`);
      }),
      new Promise((_, reject) => {
        // go install compiles mcpgate's own packages in the copy: minutes on 2 cores.
        timer = setTimeout(() => reject(new Error(`the quick start was not ready in time:\n${lines.join('\n')}\n${proc.stderrTail()}`)), 480000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return { proc, out: lines.join('\n') };
}

/** The tools the user lists through the gateway, signing in with the TS SDK on the login form. */
async function toolsOf(mcpURL, user, password, extraSteps = []) {
  const provider = new HeadlessOAuthProvider({ user, password });
  const report = await runSteps({ url: mcpURL, oauth: provider, steps: [{ op: 'tools/list' }, ...extraSteps] });
  assert.ok(report.ok, `${user}: ${JSON.stringify(report.steps.find((s) => !s.ok))}`);
  assert.equal(provider.events.authorizations, 1, `${user} signed in through the login page`);
  return { tools: [...report.steps[0].result.tools].sort(), report };
}

/** The demo tools the config's policy grants to a member of `group` (mcpgate policy explain). */
async function granted(bin, cfg, sub, group) {
  const out = [];
  for (const tool of DEMO_TOOLS) {
    const r = await run(bin, ['policy', 'explain', '--config', cfg, '--sub', sub, '--groups', group, '--tool', tool], { allowFail: true });
    assert.ok(r.code === 0 || r.code === 1, `policy explain ${tool}: exit ${r.code}\n${r.stderr}`);
    if (r.code === 0) out.push(tool);
  }
  return out.sort();
}

test('README quick start, as written: both users sign in with the TS SDK and see what the demo policy grants; a second run with --listen serves on that port', { timeout: 900000 }, async () => {
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const block = quickStartBlock(readme);
  const clone = await freshClone();
  const bin = await tempDir('mcpgate-quickstart-bin-');
  const [p1, p2] = [await freePort(), await freePort()];
  const env = { ...process.env, GOBIN: bin, PATH: `${bin}${path.delimiter}${process.env.PATH}`, MCPGATE_LISTEN: `127.0.0.1:${p1}` };
  for (const k of Object.keys(env)) if (k.startsWith('MCPGATE_') && k !== 'MCPGATE_LISTEN') delete env[k];

  // First run.
  let { proc, out } = await runBlock(block, clone, env);
  const mcpURL = out.match(/MCP URL:\s+(\S+)/)?.[1];
  assert.equal(mcpURL, `http://127.0.0.1:${p1}/mcp`, out);
  const passwords = Object.fromEntries(['alice', 'bob'].map((u) => [u, out.match(new RegExp(`^\\s*${u}\\s+/\\s+(\\S+)`, 'm'))?.[1]]));
  assert.ok(passwords.alice && passwords.bob, `passwords printed on the first run:\n${out}`);
  const password = (u) => passwords[u];

  const cfg = path.join(clone, '.mcpgate', 'mcpgate.yaml');
  const mcpgate = path.join(bin, 'mcpgate');
  const expected = { alice: await granted(mcpgate, cfg, 'alice', 'mcp-admins'), bob: await granted(mcpgate, cfg, 'bob', 'mcp-readers') };
  assert.deepEqual(expected.alice, DEMO_TOOLS, 'the demo policy gives alice every tool');
  assert.ok(expected.bob.length > 0 && expected.bob.length < DEMO_TOOLS.length, `bob reads only: ${expected.bob}`);

  const alice = await toolsOf(mcpURL, 'alice', password('alice'), [{ op: 'tools/call', name: 'power_on_vm', args: { vm_name: 'dev-db' } }]);
  assert.deepEqual(alice.tools, expected.alice);
  const bob = await toolsOf(mcpURL, 'bob', password('bob'), [
    { op: 'tools/call', name: 'get_vm', args: { vm_name: 'web-1' } },
    { op: 'expect-error', status: 403, match: '"code":-32003.*delete_vm', step: { op: 'tools/call', name: 'delete_vm', args: { vm_name: 'web-1' } } },
  ]);
  assert.deepEqual(bob.tools, expected.bob);

  // The README says the same: bob's parenthesis names his tools, then the ones he does not get.
  const said = readme.match(/`bob` \(group `mcp-readers`: ([^)]*)\)/)?.[1];
  assert.ok(said, 'the README describes what bob sees');
  const [sees, not] = said.split(/\bnot\b/);
  const ticked = (s) => [...(s ?? '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1]).sort();
  assert.deepEqual(ticked(sees), expected.bob, `README: ${said}`);
  assert.deepEqual(ticked(not), DEMO_TOOLS.filter((t) => !expected.bob.includes(t)), `README: ${said}`);

  // The command the gateway suggests works as printed (mcpgate is on PATH).
  const verify = out.match(/\(verify: (mcpgate audit verify [^\s)]+)\)/)?.[1];
  assert.ok(verify, out);
  await stopProcess(proc);
  const v = await run('sh', ['-c', verify], { cwd: clone, env });
  assert.match(v.stdout, /^OK: \d+ records, chain intact/);

  // Second run: the same block with --listen on the quickstart command. The config exists now;
  // the flag still wins (over it and over MCPGATE_LISTEN).
  const lines = block.trimEnd().split('\n');
  const i = lines.findLastIndex((l) => /\bquickstart\b/.test(l));
  assert.ok(i >= 0, block);
  lines[i] += ` --listen 127.0.0.1:${p2}`;
  ({ proc, out } = await runBlock(lines.join('\n'), clone, env));
  assert.match(out, new RegExp(`MCP URL:\\s+http://127\\.0\\.0\\.1:${p2}/mcp`));
  assert.doesNotMatch(out, /alice \//, 'passwords are printed only once');
  assert.match(out, /printed at first start/);
  const again = await toolsOf(`http://127.0.0.1:${p2}/mcp`, 'bob', password('bob'));
  assert.deepEqual(again.tools, expected.bob, 'same users, same policy');
  await assert.rejects(fetch(`http://127.0.0.1:${p1}/mcp`, { signal: AbortSignal.timeout(2000) }), 'nothing on the first port');
  await stopProcess(proc);
});
