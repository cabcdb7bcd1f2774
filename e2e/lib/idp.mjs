// Starts the e2e IdP (../idp.mjs) as a child process and returns once it listens.

import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startAndWaitForLine, stopProcess } from './proc.mjs';

const IDP_SCRIPT = fileURLToPath(new URL('../idp.mjs', import.meta.url));

/**
 * @param {{port?: number, clients?: object[], users?: object, env?: NodeJS.ProcessEnv, timeoutMs?: number,
 *   inheritStderr?: boolean, admin?: boolean}} [opts]
 *   `clients` are merged into the IdP's default clients by client_id; `env` adds IDP_* settings;
 *   `admin` turns on the user administration endpoint used by `setUser`/`deleteUser`.
 * @returns {Promise<{issuer: string, port: number, proc: import('./proc.mjs').Proc, stop: () => Promise<unknown>,
 *   setUser: (name: string, patch: object) => Promise<void>, deleteUser: (name: string) => Promise<void>}>}
 *   `setUser` merges `patch` (e.g. `{groups: [...]}`) into a user or adds one; `deleteUser` removes one.
 *   Both take effect at once: later refreshes, ID tokens and userinfo see the change.
 */
export async function startIdP(opts = {}) {
  const env = { ...process.env, ...opts.env };
  const adminToken = opts.admin ? crypto.randomBytes(16).toString('hex') : '';
  if (adminToken) env.IDP_ADMIN_TOKEN = adminToken;
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
  const admin = async (method, name, patch) => {
    if (!adminToken) throw new Error('startIdP: pass {admin: true} to change users');
    const res = await fetch(`${value.issuer}/e2e/users/${encodeURIComponent(name)}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: patch === undefined ? undefined : JSON.stringify(patch),
    });
    if (res.status !== 204) throw new Error(`IdP ${method} user ${name}: HTTP ${res.status} ${await res.text()}`);
  };
  return {
    issuer: value.issuer,
    port: value.port,
    proc,
    stop: () => stopProcess(proc),
    setUser: (name, patch) => admin('PUT', name, patch),
    deleteUser: (name) => admin('DELETE', name),
  };
}
