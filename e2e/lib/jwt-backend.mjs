// A resource server for the token exchange tests: an MCP server (official TypeScript SDK, streamable
// HTTP, stateless) that accepts a call only with a bearer JWT it verifies against an issuer's JWKS
// (signature, issuer, audience, expiry), the way a backend that trusts a security token service
// would. It records every Authorization header it receives, so a test can show that the client's
// and the gateway's tokens never arrive.

import * as jose from 'jose';
import { startStatelessBackend } from './stateless-backend.mjs';

/**
 * @param {{issuer: string, audience: string}} o
 * @returns {Promise<{url: string, seen: string[], rejected: number, close: () => Promise<void>}>}
 *   `seen`: the Authorization header of every request (or '' when absent); `rejected`: requests
 *   answered 401.
 */
export async function startJWTBackend({ issuer, audience }) {
  const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/jwks`));
  let rejected = 0;
  const backend = await startStatelessBackend({
    name: 'jwt-backend',
    setup: async (mcp, auth, res) => {
      let claims;
      try {
        const m = /^Bearer (\S+)$/.exec(auth);
        if (!m) throw new Error('no bearer token');
        ({ payload: claims } = await jose.jwtVerify(m[1], jwks, { issuer, audience }));
      } catch {
        rejected += 1;
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'invalid token' } }));
        return false;
      }
      mcp.registerTool('whoami', { description: 'The verified token: sub, aud, act, scope.' }, async () => ({
        content: [{ type: 'text', text: JSON.stringify({ sub: claims.sub, aud: claims.aud, act: claims.act, scope: claims.scope }) }],
      }));
      return true;
    },
  });
  return {
    url: backend.url,
    seen: backend.seen,
    get rejected() {
      return rejected;
    },
    close: backend.close,
  };
}
