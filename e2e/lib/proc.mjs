// Child process helpers: every process started here is killed when this process exits, whether it
// ends normally, by a signal or by an uncaught error. Each child runs in its own process group so
// that whatever it spawns (npx → node, a shell → a server) dies with it.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';

/** @typedef {{pid: number, name: string, child: import('node:child_process').ChildProcess, exited: Promise<{code: number|null, signal: string|null}>, stderrTail: () => string}} Proc */

/** @type {Set<Proc>} */
const running = new Set();
let hooksInstalled = false;

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

function installHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' also runs when Node dies of an uncaught exception or rejection. Its handlers must be
  // synchronous, so send SIGKILL, which cannot be ignored.
  process.on('exit', () => {
    for (const p of running) killGroup(p.pid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      for (const p of running) killGroup(p.pid, 'SIGKILL');
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/**
 * Starts a process. Its stdout is handed line by line to `onLine` (if given); stderr is passed
 * through to ours (prefixed) when `inheritStderr` is true, and its tail is kept for error messages.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{name?: string, env?: NodeJS.ProcessEnv, cwd?: string, onLine?: (line: string) => void, inheritStderr?: boolean}} [opts]
 * @returns {Proc}
 */
export function startProcess(cmd, args, opts = {}) {
  installHooks();
  const name = opts.name ?? cmd;
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group, so killGroup reaches grandchildren
  });
  if (child.pid === undefined) {
    throw new Error(`${name}: could not start ${cmd}`);
  }
  let stderrBuf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderrBuf = (stderrBuf + chunk).slice(-8192);
    if (opts.inheritStderr) {
      for (const l of chunk.split('\n')) if (l) process.stderr.write(`[${name}] ${l}\n`);
    }
  });
  let outBuf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    outBuf += chunk;
    let i;
    while ((i = outBuf.indexOf('\n')) >= 0) {
      const line = outBuf.slice(0, i);
      outBuf = outBuf.slice(i + 1);
      opts.onLine?.(line);
    }
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: -1, signal: null }));
  });
  /** @type {Proc} */
  const proc = { pid: child.pid, name, child, exited, stderrTail: () => stderrBuf };
  running.add(proc);
  exited.then(() => running.delete(proc));
  return proc;
}

/**
 * Stops a process started by startProcess: SIGTERM to its group, then SIGKILL after `graceMs`.
 * @param {Proc} proc
 */
export async function stopProcess(proc, graceMs = 3000) {
  if (!running.has(proc)) return proc.exited;
  killGroup(proc.pid, 'SIGTERM');
  const timer = setTimeout(() => killGroup(proc.pid, 'SIGKILL'), graceMs);
  try {
    return await proc.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops every process started by startProcess that is still running. */
export async function stopAll() {
  await Promise.all([...running].map((p) => stopProcess(p)));
}

/**
 * Waits for the first stdout line for which `match` returns a value other than undefined, and
 * returns that value. Fails if the process exits first or the timeout passes.
 * @template T
 * @param {string} cmd
 * @param {string[]} args
 * @param {(line: string) => T|undefined} match
 * @param {{name?: string, env?: NodeJS.ProcessEnv, cwd?: string, timeoutMs?: number, inheritStderr?: boolean}} [opts]
 * @returns {Promise<{proc: Proc, value: T}>}
 */
export async function startAndWaitForLine(cmd, args, match, opts = {}) {
  const name = opts.name ?? cmd;
  let resolveLine;
  const gotLine = new Promise((r) => {
    resolveLine = r;
  });
  let found = false;
  const proc = startProcess(cmd, args, {
    ...opts,
    onLine: (line) => {
      if (found) return;
      let v;
      try {
        v = match(line);
      } catch {
        v = undefined;
      }
      if (v !== undefined) {
        found = true;
        resolveLine(v);
      }
    },
  });
  const timeoutMs = opts.timeoutMs ?? 20000;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: not ready after ${timeoutMs} ms\n${proc.stderrTail()}`)), timeoutMs);
  });
  const early = proc.exited.then(({ code, signal }) => {
    throw new Error(`${name}: exited (code ${code}, signal ${signal}) before it was ready\n${proc.stderrTail()}`);
  });
  try {
    const value = await Promise.race([gotLine, timeout, early]);
    return { proc, value };
  } catch (err) {
    await stopProcess(proc);
    throw err;
  } finally {
    clearTimeout(timer);
    early.catch(() => {}); // the process may exit later; that is not this call's failure
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = /** @type {net.AddressInfo} */ (srv.address());
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * Polls `url` until it answers with any HTTP status (a listening server), or fails after `timeoutMs`.
 * @param {string} url
 * @param {{timeoutMs?: number, proc?: Proc}} [opts] with `proc`, fail at once if it exits.
 */
export async function waitForHttp(url, opts = {}) {
  const deadline = Date.now() + (opts.timeoutMs ?? 20000);
  let lastErr;
  let exited = false;
  opts.proc?.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`${opts.proc.name} exited before ${url} answered\n${opts.proc.stderrTail()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000), redirect: 'manual' });
      await res.body?.cancel();
      return res.status;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${opts.timeoutMs ?? 20000} ms: ${lastErr?.cause?.code ?? lastErr?.message}`);
}
