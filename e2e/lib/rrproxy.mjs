// A round-robin HTTP load balancer for replica tests: each request goes to the next target, with
// no stickiness (no cookie, no session affinity), the client's Host header passed through (the
// replicas' public URL is the proxy's). A test may pin it to one target for a while.
//
//   const lb = await startRoundRobinProxy(['127.0.0.1:4001', '127.0.0.1:4002']);
//   lb.base            // http://127.0.0.1:PORT: the replicas' public_url
//   lb.pin(1)          // every request to target 1 until lb.pin(null)
//   lb.log             // [{target, method, path, sessionId, status, t}] (t: performance.now() at arrival)
//   lb.targets.push('127.0.0.1:4003')   // targets may be added once the replicas listen

import http from 'node:http';

/**
 * @param {string[]} targets host:port of each replica
 * @returns {Promise<{base: string, port: number, targets: string[], log: {target: number, method: string, path: string,
 *   sessionId: string|null, status: number, t: number}[], pin: (i: number|null) => void, close: () => Promise<void>}>}
 */
export async function startRoundRobinProxy(targets) {
  let next = 0;
  let pinned = null;
  const log = [];
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const target = pinned ?? next++ % targets.length;
    const [host, port] = targets[target].split(':');
    const entry = { target, method: req.method, path: req.url.split('?')[0], sessionId: req.headers['mcp-session-id'] ?? null, status: 0, t: performance.now() };
    log.push(entry);
    const up = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode, ur.rawHeaders);
      res.flushHeaders();
      ur.pipe(res);
    });
    up.on('error', (err) => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    // The client went away (an SSE stream the SDK closed): end the upstream request too.
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    targets,
    log,
    pin(i) {
      pinned = i;
    },
    async close() {
      server.closeAllConnections();
      agent.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
