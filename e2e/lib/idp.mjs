// Starts the e2e IdP (../idp.mjs) as a child process and returns once it listens.

import { fileURLToPath } from 'node:url';
import { startAndWaitForLine, stopProcess } from './proc.mjs';

const IDP_SCRIPT = fileURLToPath(new URL('../idp.mjs', import.meta.url));

/**
 * @param {{port?: number, clients?: object[], users?: object, env?: NodeJS.ProcessEnv, timeoutMs?: number, inheritStderr?: boolean}} [opts]
 *   `clients` are merged into the IdP's default clients by client_id; `env` adds IDP_* settings.
 * @returns {Promise<{issuer: string, port: number, proc: import('./proc.mjs').Proc, stop: () => Promise<unknown>}>}
 */
export async function startIdP(opts = {}) {
  const env = { ...process.env, ...opts.env };
  if (opts.port !== undefined) env.IDP_PORT = String(opts.port);
  if (opts.clients) env.IDP_CLIENTS = JSON.stringify(opts.clients);
  if (opts.users) env.IDP_USERS = JSON.stringify(opts.users);
  const { proc, value } = await startAndWaitForLine(
    process.execPath,
    [IDP_SCRIPT],
    (line) => {
      const v = JSON.parse(line);
      return typeof v.issuer === 'string' && Number.isInteger(v.port) ? v : undefined;
    },
    { name: 'idp', env, timeoutMs: opts.timeoutMs ?? 20000, inheritStderr: opts.inheritStderr ?? env.IDP_DEBUG === '1' },
  );
  return { issuer: value.issuer, port: value.port, proc, stop: () => stopProcess(proc) };
}
