// Serves OAuth client ID metadata documents (CIMD) over https on 127.0.0.1 as https://localhost:PORT/…, with a
// throwaway self-signed certificate made by openssl, so that mcpgate can fetch them through
// `cimd.allowed_hosts: [localhost]` and `cimd.ca_file` (the way an internal host with an internal CA is set up).
//
//   const cimd = await startCIMDServer();
//   cimd.docs.set('/client.json', (url) => ({ client_id: url, redirect_uris: [...] }));
//   cimd.url('/client.json'); cimd.caFile; await cimd.stop();

import https from 'node:https';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { run, tempDir } from './mcpgate.mjs';

/**
 * @returns {Promise<{origin: string, caFile: string, docs: Map<string, (url: string) => object>, fetches: string[],
 *   url: (p: string) => string, stop: () => Promise<void>}>}
 */
export async function startCIMDServer() {
  const dir = await tempDir('mcpgate-e2e-cimd-');
  const keyFile = path.join(dir, 'key.pem');
  const caFile = path.join(dir, 'cert.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile,
    '-out', caFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
  const docs = new Map();
  const fetches = [];
  const server = https.createServer({ key: await readFile(keyFile), cert: await readFile(caFile) }, (req, res) => {
    const p = new URL(req.url, 'https://localhost').pathname;
    fetches.push(p);
    const doc = docs.get(p);
    if (!doc) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(doc(origin + p)));
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const origin = `https://localhost:${server.address().port}`;
  return {
    origin,
    caFile,
    docs,
    fetches,
    url: (p) => origin + p,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
