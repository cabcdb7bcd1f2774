// A scripted stand-in for an authorization server's login and consent pages (the shape mcpgate's
// pages will have), for testing the headless and browser form walkers:
//   GET /authorize → 302 /login (sets __Host-flow, Secure) → login form (hidden csrf, username,
//   password) → POST /login (needs the cookie, the page's Origin and csrf) → 303 /consent → form
//   (hidden csrf, buttons action=approve|deny) → POST → 302 to `redirectUri` with code or error.
// A wrong login re-renders the form with 401 and "bad login". GET /noform is a page without a form.

import http from 'node:http';
import { once } from 'node:events';

/** @returns {Promise<{base: string, close: () => void}>} */
export async function startFakeLoginPages({ redirectUri, user = 'alice', password = 'alice-pw' }) {
  const srv = http.createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    let body = '';
    for await (const c of req) body += c;
    const form = new URLSearchParams(body);
    const html = (status, s) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><body>${s}</body></html>`);
    };
    const loginForm = '<form method="post" action="/login"><input type="hidden" name="csrf" value="c1"><input name="username"><input type="password" name="password"><button type="submit">Sign in</button></form>';
    if (u.pathname === '/authorize') {
      res.writeHead(302, { location: '/login', 'set-cookie': '__Host-flow=f1; Path=/; Secure; HttpOnly; SameSite=Lax' });
      return res.end();
    }
    if (u.pathname === '/login' && req.method === 'GET') return html(200, loginForm);
    if (u.pathname === '/login') {
      const ok = req.headers.cookie === '__Host-flow=f1' && req.headers.origin === `http://127.0.0.1:${srv.address().port}` && form.get('csrf') === 'c1';
      if (ok && form.get('username') === user && form.get('password') === password) {
        res.writeHead(303, { location: '/consent' });
        return res.end();
      }
      return html(401, `<p>bad login</p>${loginForm}`);
    }
    if (u.pathname === '/consent' && req.method === 'GET') {
      return html(200, '<h1>Allow the client?</h1><form method="post"><input type="hidden" name="csrf" value="c2"><button name="action" value="approve">Approve</button><button name="action" value="deny">Deny</button></form>');
    }
    if (u.pathname === '/consent') {
      const target = new URL(redirectUri);
      if (form.get('csrf') === 'c2' && form.get('action') === 'approve') target.search = 'code=abc&state=s';
      else target.search = 'error=access_denied';
      res.writeHead(302, { location: target.href });
      return res.end();
    }
    if (u.pathname === '/noform') return html(200, '<h1>Something broke</h1>');
    res.writeHead(404);
    res.end();
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    base: `http://127.0.0.1:${srv.address().port}`,
    close: () => {
      srv.closeAllConnections();
      srv.close();
    },
  };
}
