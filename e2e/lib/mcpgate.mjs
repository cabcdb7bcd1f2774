// Runs the real mcpgate binary for end-to-end tests: built once per test process from the work
// tree (or taken from $MCPGATE_BIN), configured by a YAML file in a temp dir, listening on a free
// 127.0.0.1 port, and restartable on the same port and data (SQLite file, audit log, config with
// the same encryption_key).
//
//   const gw = await startMcpgate({ name: 'as', config: ({ base, dir }) => `auth: ...` });
//   gw.base            // http://127.0.0.1:PORT (= public_url)
//   await gw.restart(); await gw.stop();

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, stopProcess } from './proc.mjs';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

let built;
const tempDirs = [];

/** A directory removed when the test process exits (best effort). */
export async function tempDir(prefix = 'mcpgate-e2e-') {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

/** Removes every directory made by tempDir. */
export async function cleanupTempDirs() {
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/**
 * The path of the mcpgate binary: $MCPGATE_BIN, else `go build -o <tmp>/mcpgate ./cmd/mcpgate`
 * from the repository root, once per process.
 * @returns {Promise<string>}
 */
export function buildMcpgate() {
  built ??= (async () => {
    if (process.env.MCPGATE_BIN) return process.env.MCPGATE_BIN;
    const out = path.join(await tempDir('mcpgate-e2e-bin-'), 'mcpgate');
    await run('go', ['build', '-o', out, './cmd/mcpgate'], { cwd: REPO_ROOT, timeoutMs: 300000 });
    return out;
  })();
  return built;
}

/**
 * Runs a command to completion. Rejects on a non-zero exit unless `allowFail`.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{cwd?: string, input?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number, allowFail?: boolean}} [o]
 * @returns {Promise<{code: number, stdout: string, stderr: string}>}
 */
export function run(cmd, args, o = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, timeout: o.timeoutMs ?? 60000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (code !== 0 && !o.allowFail) {
        reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}${err?.killed ? ' (timeout)' : ''}\n${stderr}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
    if (o.input !== undefined) child.stdin.end(o.input);
  });
}

/** Runs `mcpgate ARGS…` with the built binary. */
export async function mcpgateCLI(args, o = {}) {
  return run(await buildMcpgate(), args, o);
}

/** A fresh 32-byte encryption key, base64. */
export function randomKey() {
  return crypto.randomBytes(32).toString('base64');
}

/** A bcrypt hash of `password` made by `mcpgate users hash-password` (cost 10: fast in tests). */
export async function hashPassword(password) {
  const { stdout } = await mcpgateCLI(['users', 'hash-password', '--cost', '10'], { input: password });
  const h = stdout.trim();
  if (!h.startsWith('$2')) throw new Error(`hash-password printed ${JSON.stringify(h)}`);
  return h;
}

/** The `policy:` most e2e gateways use: group mcp-readers lists and gets, mcp-admins does everything. */
export const READER_ADMIN_POLICY = `
policy:
  roles:
    reader: { tools: ["list_*", "get_*"] }
    admin: { tools: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]`;

/** `auth.authorization_server.rate_limit` for a test process whose one client address runs every test. */
export const AS_LOAD_LIMITS = 'rate_limit: { per_ip: { rps: 1000, burst: 1000 }, max_pending_per_ip: 10000 } # one client address runs every test';

const indent = (lines, n) => lines.join('\n').split('\n').map((l) => (l ? ' '.repeat(n) + l : l)).join('\n');

/**
 * The head of a gateway config in authorization_server mode, as every e2e gateway writes it:
 * `encryption_key` (`key`, else a fresh one), `shutdown_timeout: 5s`, and `auth:` whose
 * authorization server has `scopes: [mcp]` (or `scopes`), the lines of `as` (YAML at that level,
 * e.g. 'revocation_cache_ttl: 1s', AS_LOAD_LIMITS) and `upstream` (oidcUpstream or staticUpstream).
 * It ends inside `auth:`, so a caller may go on with `  scopes_supported: …`.
 * @param {{upstream: string, as?: string[], key?: string, scopes?: string}} o
 */
export function authServerYAML({ upstream, as = [], key = randomKey(), scopes = '[mcp]' }) {
  return `
encryption_key: ${key}
shutdown_timeout: 5s
auth:
  mode: authorization_server
  authorization_server:
${indent([`scopes: ${scopes}`, ...as, upstream], 4)}`;
}

/**
 * `upstream:` signing users in at the e2e IdP (lib/idp.mjs, client mcpgate) at `issuer`;
 * `extra` lines (e.g. 'allowed_groups: [mcp-admins]') join it.
 */
export function oidcUpstream(issuer, ...extra) {
  return `upstream:
${indent(['type: oidc', `issuer: ${issuer}`, 'client_id: mcpgate', 'client_secret: mcpgate-secret',
    'scopes: [openid, profile, email, groups]', 'allow_private_issuer: true', ...extra], 2)}`;
}

/**
 * `upstream:` of built-in users, each `{name, hash, groups?}` (hash from hashPassword; the email is
 * name@example.test).
 * @param {{name: string, hash: string, groups?: string[]}[]} users
 */
export function staticUpstream(users) {
  const user = (u) =>
    `- { username: ${u.name}, email: ${u.name}@example.test, ${u.groups ? `groups: [${u.groups.join(', ')}], ` : ''}password_hash: "${u.hash}" }`;
  return `upstream:
  type: static
  users:
${indent(users.map(user), 4)}`;
}

/** Dynamic client registration (RFC 7591) at the gateway's authorization server: `{status, json}`. */
export async function registerClient(gw, meta) {
  const res = await fetch(`${gw.base}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(meta) });
  return { status: res.status, json: await res.json() };
}

/**
 * An authorization request at the gateway (RFC 6749 §4.1.1, PKCE S256 per RFC 7636 §4.3) for scope
 * mcp and state st; `extra` parameters (e.g. `{resource}`) go before the challenge.
 */
export function authorizeURL(gw, clientId, redirectUri, challenge, extra = {}) {
  const u = new URL(`${gw.base}/authorize`);
  const params = { response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'mcp', state: 'st', ...extra, code_challenge: challenge, code_challenge_method: 'S256' };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

/** Polls `url` until it answers 200; fails at once when `proc` exits. */
async function waitFor200(url, proc, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  proc.exited.then(() => {
    exited = true;
  });
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${proc.name} exited before ${url} answered\n${proc.stderrTail()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err?.cause?.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url}: not healthy within ${timeoutMs} ms (${last})\n${proc.stderrTail()}`);
}

/**
 * @typedef {object} Gateway
 * @property {string} name
 * @property {string} base       public URL, http://127.0.0.1:PORT
 * @property {number} port
 * @property {string} dir        data directory (config, database, audit log)
 * @property {string} configPath
 * @property {string} auditPath  dir/audit.log (used when the config writes there)
 * @property {import('./proc.mjs').Proc|undefined} proc  the running process
 * @property {() => string} logs  the tail of the current process's stderr
 * @property {() => Promise<{code: number|null, signal: string|null}|undefined>} stop  SIGTERM, wait for exit
 * @property {() => Promise<void>} start    start again (same port, config and data)
 * @property {() => Promise<void>} restart  stop + start
 */

/**
 * Writes the config and starts `mcpgate serve --config F` on a free port.
 * `config({base, dir, port})` returns the YAML without `listen`/`public_url` (they are added).
 * `publicUrl` replaces `base` as the public URL: a replica behind a load balancer (`base` is still where it listens).
 * @param {{name?: string, config: (o: {base: string, dir: string, port: number}) => string, env?: NodeJS.ProcessEnv,
 *   timeoutMs?: number, publicUrl?: string}} o
 * @returns {Promise<Gateway>}
 */
export async function startMcpgate(o) {
  const bin = await buildMcpgate();
  const name = o.name ?? 'mcpgate';
  const dir = await tempDir(`mcpgate-e2e-${name}-`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const configPath = path.join(dir, 'mcpgate.yaml');
  const text = `listen: 127.0.0.1:${port}\npublic_url: ${o.publicUrl ?? base}\n${o.config({ base, dir, port })}`;
  await writeFile(configPath, text, { mode: 0o600 });
  const inherit = process.env.E2E_DEBUG === '1';
  /** @type {Gateway} */
  const gw = {
    name,
    base,
    port,
    dir,
    configPath,
    auditPath: path.join(dir, 'audit.log'),
    proc: undefined,
    logs: () => gw.proc?.stderrTail() ?? '',
    async start() {
      if (gw.proc) throw new Error(`${name} is already running`);
      const proc = startProcess(bin, ['serve', '--config', configPath], {
        name,
        cwd: dir,
        env: { ...process.env, ...o.env },
        inheritStderr: inherit,
      });
      gw.proc = proc;
      proc.exited.then(() => {
        if (gw.proc === proc) gw.proc = undefined;
      });
      try {
        await waitFor200(`${base}/healthz`, proc, o.timeoutMs ?? 30000);
      } catch (err) {
        await stopProcess(proc);
        throw err;
      }
    },
    async stop() {
      const p = gw.proc;
      if (!p) return undefined;
      const r = await stopProcess(p, 10000);
      gw.proc = undefined;
      return r;
    },
    async restart() {
      await gw.stop();
      await gw.start();
    },
  };
  await gw.start();
  return gw;
}

/**
 * The go-sdk demo MCP server (`mcpgate demo-backend`): tools list_vms, get_vm, power_on_vm,
 * delete_vm, echo, count.
 * @returns {Promise<{url: string, port: number, proc: import('./proc.mjs').Proc, stop: () => Promise<unknown>}>}
 */
export async function startDemoBackend() {
  const bin = await buildMcpgate();
  const port = await freePort();
  const proc = startProcess(bin, ['demo-backend', '--listen', `127.0.0.1:${port}`], { name: 'demo-backend' });
  const url = `http://127.0.0.1:${port}/mcp`;
  // The demo server answers GET /mcp without a session with 4xx: any answer means it listens.
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stopProcess(proc);
        throw new Error(`demo-backend did not answer: ${err.message}\n${proc.stderrTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url, port, proc, stop: () => stopProcess(proc) };
}

/**
 * Records every fetch() made in this process (the MCP SDK, the OAuth helpers and the tests all use
 * the global fetch): method, URL, the MCP-Protocol-Version, Content-Type and Accept headers sent, status
 * and the X-Request-Id of the response (status 0 and `error` when fetch failed).
 * @returns {{calls: {method: string, url: URL, status: number, requestId: string|null, protocolVersion: string|null,
 *   contentType: string|null, accept: string|null, error?: string}[],
 *   restore: () => void}}
 */
export function recordFetches() {
  const orig = globalThis.fetch;
  const calls = [];
  globalThis.fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const call = {
      method,
      url,
      status: 0,
      requestId: null,
      protocolVersion: headers.get('mcp-protocol-version'),
      contentType: headers.get('content-type'),
      accept: headers.get('accept'),
    };
    calls.push(call);
    try {
      const res = await orig(input, init);
      call.status = res.status;
      call.requestId = res.headers.get('x-request-id');
      return res;
    } catch (err) {
      call.error = err?.name ?? String(err); // e.g. AbortError: the client gave up before the response
      throw err;
    }
  };
  return { calls, restore: () => (globalThis.fetch = orig) };
}
