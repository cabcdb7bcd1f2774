// A minimal OAuth protected resource in front of an MCP server, standing in for mcpgate in
// resource-server mode so that the OAuth path of mcp-client.mjs can be tested before the gateway
// exists. It verifies JWT access tokens from one issuer against its JWKS (RFC 9068: typ, iss,
// aud = this resource, a required scope), serves RFC 9728 metadata and forwards allowed requests.
// TEST FIXTURE ONLY: no Origin checks, no limits.

import http from 'node:http';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import * as jose from 'jose';
import { discover } from './oauth.mjs';

const FORWARDED_REQUEST_HEADERS = ['content-type', 'accept', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id'];
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'mcp-session-id', 'cache-control'];

/**
 * @param {{issuer: string, upstream: string, scope?: string}} o upstream = the MCP server's URL
 * @returns {Promise<{url: string, subjects: string[], stop: () => Promise<void>}>} url = the protected MCP endpoint;
 *   subjects = the `sub` of every request let through, in order.
 */
export async function startFakeResource(o) {
  const requiredScope = o.scope ?? 'mcp:tools';
  const meta = await discover(o.issuer);
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${server.address().port}`;
  const resource = `${origin}/mcp`;
  const prmURL = `${origin}/.well-known/oauth-protected-resource/mcp`;
  const prm = {
    resource,
    authorization_servers: [o.issuer],
    scopes_supported: [requiredScope],
    bearer_methods_supported: ['header'],
  };
  const subjects = [];

  function challenge(res, status, error) {
    const params = [`resource_metadata="${prmURL}"`, `scope="${requiredScope}"`];
    if (error) params.unshift(`error="${error}"`);
    res.writeHead(status, { 'www-authenticate': `Bearer ${params.join(', ')}`, 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: error ?? 'unauthorized' }));
  }

  server.on('request', async (req, res) => {
    try {
      const path = req.url.split('?')[0];
      if (req.method === 'GET' && (path === '/.well-known/oauth-protected-resource/mcp' || path === '/.well-known/oauth-protected-resource')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(prm));
      }
      if (path !== '/mcp') {
        res.writeHead(404);
        return res.end();
      }
      const m = /^Bearer ([\w.~+/-]+=*)$/.exec(req.headers.authorization ?? '');
      if (!m) return challenge(res, 401);
      let claims;
      try {
        ({ payload: claims } = await jose.jwtVerify(m[1], jwks, { issuer: o.issuer, audience: resource, typ: 'at+jwt' }));
      } catch {
        return challenge(res, 401, 'invalid_token');
      }
      if (!String(claims.scope ?? '').split(' ').includes(requiredScope)) {
        return challenge(res, 403, 'insufficient_scope');
      }
      subjects.push(claims.sub);

      const abort = new AbortController();
      res.on('close', () => abort.abort());
      const headers = {};
      for (const h of FORWARDED_REQUEST_HEADERS) if (req.headers[h]) headers[h] = req.headers[h];
      let body;
      if (req.method === 'POST') {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        body = Buffer.concat(chunks);
      }
      const up = await fetch(o.upstream, { method: req.method, headers, body, signal: abort.signal });
      const out = {};
      for (const h of FORWARDED_RESPONSE_HEADERS) if (up.headers.get(h)) out[h] = up.headers.get(h);
      res.writeHead(up.status, out);
      if (up.body) Readable.fromWeb(up.body).on('error', () => res.destroy()).pipe(res);
      else res.end();
    } catch (err) {
      if (!res.headersSent) res.writeHead(502);
      res.end();
      if (err.name !== 'AbortError') process.stderr.write(`fake-resource: ${err.message}\n`);
    }
  });

  return {
    url: resource,
    subjects,
    stop: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
