// A resource server for the token exchange tests: an MCP server (official TypeScript SDK, streamable
// HTTP, stateless) that accepts a call only with a bearer JWT it verifies against an issuer's JWKS
// (signature, issuer, audience, expiry), the way a backend that trusts a security token service
// would. It records every Authorization header it receives, so a test can show that the client's
// and the gateway's tokens never arrive.

import http from 'node:http';
import { once } from 'node:events';
import * as jose from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

/**
 * @param {{issuer: string, audience: string}} o
 * @returns {Promise<{url: string, seen: string[], rejected: number, close: () => Promise<void>}>}
 *   `seen`: the Authorization header of every request (or '' when absent); `rejected`: requests
 *   answered 401.
 */
export async function startJWTBackend({ issuer, audience }) {
  const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const state = { seen: [], rejected: 0 };
  const server = http.createServer(async (req, res) => {
    const auth = req.headers.authorization ?? '';
    state.seen.push(auth);
    let claims;
    try {
      const m = /^Bearer (\S+)$/.exec(auth);
      if (!m) throw new Error('no bearer token');
      ({ payload: claims } = await jose.jwtVerify(m[1], jwks, { issuer, audience }));
    } catch {
      state.rejected += 1;
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'invalid token' } }));
      return;
    }
    const mcp = new McpServer({ name: 'jwt-backend', version: '1.0.0' });
    mcp.registerTool('whoami', { description: 'The verified token: sub, aud, act, scope.' }, async () => ({
      content: [{ type: 'text', text: JSON.stringify({ sub: claims.sub, aud: claims.aud, act: claims.act, scope: claims.scope }) }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}/mcp`,
    get seen() {
      return state.seen;
    },
    get rejected() {
      return state.rejected;
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
