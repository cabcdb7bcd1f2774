// Starts @modelcontextprotocol/server-everything in Streamable HTTP mode on 127.0.0.1.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { freePort, startProcess, stopProcess, waitForHttp } from './proc.mjs';

const require = createRequire(import.meta.url);
const PRELOAD = fileURLToPath(new URL('./loopback-only.mjs', import.meta.url));

/** The path of server-everything's entry script (`node ENTRY stdio` runs it over stdio). */
export function everythingEntry() {
  const pkg = require.resolve('@modelcontextprotocol/server-everything/package.json');
  return path.join(path.dirname(pkg), 'dist', 'index.js');
}

/**
 * @param {{port?: number, timeoutMs?: number}} [opts]
 * @returns {Promise<{url: string, port: number, proc: import('./proc.mjs').Proc, stop: () => Promise<unknown>}>}
 *   `url` is the MCP endpoint, http://127.0.0.1:PORT/mcp.
 */
export async function startEverything(opts = {}) {
  const port = opts.port ?? (await freePort());
  const proc = startProcess(process.execPath, ['--import', PRELOAD, everythingEntry(), 'streamableHttp'], {
    name: 'server-everything',
    env: { ...process.env, PORT: String(port) },
  });
  const url = `http://127.0.0.1:${port}/mcp`;
  try {
    await waitForHttp(url, { proc, timeoutMs: opts.timeoutMs ?? 20000 });
  } catch (err) {
    await stopProcess(proc);
    throw err;
  }
  return { url, port, proc, stop: () => stopProcess(proc) };
}
