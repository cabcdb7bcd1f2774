// A stateless MCP server (official TypeScript SDK, streamable HTTP, JSON responses) on 127.0.0.1 for
// tests that need a backend of their own: it records the Authorization header of every request, so
// a test can show which tokens arrive, and builds a fresh McpServer per request from `setup`.

import http from 'node:http';
import { once } from 'node:events';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

/**
 * @param {{name: string, setup: (mcp: McpServer, auth: string, res: http.ServerResponse) => boolean | Promise<boolean>}} o
 *   `setup` registers the request's tools on `mcp` given its Authorization header (`auth`, '' when
 *   absent), or answers `res` itself and returns false (a refused token, say).
 * @returns {Promise<{url: string, seen: string[], close: () => Promise<void>}>} `seen`: the
 *   Authorization header of every request.
 */
export async function startStatelessBackend({ name, setup }) {
  const seen = [];
  const server = http.createServer(async (req, res) => {
    const auth = req.headers.authorization ?? '';
    seen.push(auth);
    const mcp = new McpServer({ name, version: '1.0.0' });
    if (!(await setup(mcp, auth, res))) return;
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
    seen,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
