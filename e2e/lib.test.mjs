// Unit tests of lib/cookies.mjs and lib/forms.mjs. Run: node --test

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CookieJar } from './lib/cookies.mjs';
import { decodeEntities, fillForm, followAuthorization, parseFirstForm } from './lib/forms.mjs';
import { freePort, startProcess, stopProcess, waitForHttp } from './lib/proc.mjs';
import { startFakeLoginPages } from './lib/fake-login-pages.mjs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AS_LOAD_LIMITS, authServerYAML, authorizeURL, cleanupTempDirs, hashPassword, mcpgateCLI, oidcUpstream, staticUpstream, tempDir } from './lib/mcpgate.mjs';

function setCookies(...lines) {
  const h = new Headers();
  for (const l of lines) h.append('set-cookie', l);
  return h;
}

describe('CookieJar', () => {
  const cases = [
    { name: 'host-only cookie with default path', set: ['a=1'], from: 'http://127.0.0.1:8080/x/y', to: 'http://127.0.0.1:8080/x/z', want: 'a=1' },
    { name: 'default path excludes siblings', set: ['a=1'], from: 'http://127.0.0.1/x/y', to: 'http://127.0.0.1/other', want: '' },
    { name: 'path attribute matches sub-paths only at /', set: ['a=1; Path=/interaction/abc'], from: 'http://h.test/', to: 'http://h.test/interaction/abcdef', want: '' },
    { name: 'path attribute matches its sub-path', set: ['a=1; Path=/interaction/abc'], from: 'http://h.test/', to: 'http://h.test/interaction/abc/login', want: 'a=1' },
    { name: 'other host gets nothing', set: ['a=1; Path=/'], from: 'http://127.0.0.1/', to: 'http://localhost/', want: '' },
    { name: 'cookie for a foreign domain is rejected', set: ['a=1; Domain=evil.test; Path=/'], from: 'http://h.test/', to: 'http://evil.test/', want: '' },
    { name: 'domain cookie reaches subdomains', set: ['a=1; Domain=h.test; Path=/'], from: 'http://h.test/', to: 'http://sub.h.test/', want: 'a=1' },
    { name: 'Max-Age=0 deletes', set: ['a=1; Path=/', 'a=; Path=/; Max-Age=0'], from: 'http://h.test/', to: 'http://h.test/', want: '' },
    { name: 'Expires in the past deletes', set: ['a=1; Path=/', 'a=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT'], from: 'http://h.test/', to: 'http://h.test/', want: '' },
    { name: 'Max-Age wins over Expires', set: ['a=1; Path=/; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT'], from: 'http://h.test/', to: 'http://h.test/', want: 'a=1' },
    { name: 'Secure cookie from http non-loopback is rejected', set: ['a=1; Path=/; Secure'], from: 'http://h.test/', to: 'https://h.test/', want: '' },
    { name: 'Secure cookie on loopback http is kept (as in browsers)', set: ['a=1; Path=/; Secure'], from: 'http://127.0.0.1:9/', to: 'http://127.0.0.1:9/', want: 'a=1' },
    { name: '__Host- cookie needs Secure', set: ['__Host-s=1; Path=/'], from: 'http://127.0.0.1/', to: 'http://127.0.0.1/', want: '' },
    { name: '__Host- cookie must not have Domain', set: ['__Host-s=1; Path=/; Secure; Domain=localhost'], from: 'http://localhost/', to: 'http://localhost/', want: '' },
    { name: '__Host- cookie must have Path=/', set: ['__Host-s=1; Path=/x; Secure'], from: 'http://127.0.0.1/x', to: 'http://127.0.0.1/x', want: '' },
    { name: 'valid __Host- cookie', set: ['__Host-s=1; Path=/; Secure; HttpOnly; SameSite=Lax'], from: 'http://127.0.0.1/', to: 'http://127.0.0.1/a', want: '__Host-s=1' },
    { name: 'longer path first', set: ['a=1; Path=/', 'b=2; Path=/x'], from: 'http://h.test/', to: 'http://h.test/x/y', want: 'b=2; a=1' },
    { name: 'malformed line is ignored', set: ['=novalue', 'noequals'], from: 'http://h.test/', to: 'http://h.test/', want: '' },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const jar = new CookieJar();
      jar.store(c.from, setCookies(...c.set));
      assert.equal(jar.header(c.to), c.want);
    });
  }
});

describe('forms', () => {
  const consentPage = `<!doctype html><html><body>
    <h1>Allow &quot;Cursor&quot;?</h1>
    <form method="POST" action="/consent?x=1&amp;y=2">
      <input type="hidden" name="csrf" value="tok&#x2F;en">
      <input type=hidden name='request_id' value='r1'>
      <input type="checkbox" name="remember">
      <input type="checkbox" name="ack" checked>
      <input name="disabled" value="no" disabled>
      <textarea name="note">a &lt;b&gt;</textarea>
      <button type="submit" name="action" value="deny">Deny</button>
      <button type="submit" name="action" value="approve">Approve</button>
      <button type="button" name="noop" value="x">Not a submit</button>
    </form>
    <form action="/second"><input name="z"></form>
  </body></html>`;

  test('parseFirstForm reads action, method, fields and buttons', () => {
    const f = parseFirstForm(consentPage, 'http://127.0.0.1:8080/authorize?a=b');
    assert.deepEqual(f, {
      action: 'http://127.0.0.1:8080/consent?x=1&y=2',
      method: 'post',
      fields: [
        { name: 'csrf', value: 'tok/en', type: 'hidden' },
        { name: 'request_id', value: 'r1', type: 'hidden' },
        { name: 'ack', value: 'on', type: 'checkbox' },
        { name: 'note', value: 'a <b>', type: 'textarea' },
      ],
      buttons: [
        { name: 'action', value: 'deny', type: 'submit' },
        { name: 'action', value: 'approve', type: 'submit' },
      ],
    });
  });

  test('fillForm picks approve by default and deny on request', () => {
    const f = parseFirstForm(consentPage, 'http://127.0.0.1/');
    assert.equal(fillForm(f, {}).toString(), 'csrf=tok%2Fen&request_id=r1&ack=on&note=a+%3Cb%3E&action=approve');
    assert.equal(fillForm(f, { choice: 'deny' }).get('action'), 'deny');
  });

  test('fillForm fills username and password but not hidden fields named like them', () => {
    const html = `<form method=post action=/login>
      <input type=hidden name=username value=keep>
      <input id=u name=username><input type=password name=pw><input type=hidden name=state value=s>
      <input type=submit value="Sign in"></form>`;
    const body = fillForm(parseFirstForm(html, 'http://h.test/login?x'), { username: 'alice', password: 'alice-pw' });
    assert.deepEqual([...body], [['username', 'keep'], ['username', 'alice'], ['pw', 'alice-pw'], ['state', 's']]);
  });

  test('a form without action posts to the page URL; no form gives undefined', () => {
    assert.equal(parseFirstForm('<form method=post><input name=a value=1></form>', 'http://h.test/p?q=1').action, 'http://h.test/p?q=1');
    assert.equal(parseFirstForm('<p>no form here</p>', 'http://h.test/'), undefined);
  });

  test('decodeEntities', () => {
    assert.equal(decodeEntities('&amp;&lt;&gt;&quot;&#39;&#x41;&#66;&unknown;&#xFFFFFFF;'), '&<>"\'AB&unknown;&#xFFFFFFF;');
  });
});

describe('followAuthorization against a scripted server', () => {
  const server = () => startFakeLoginPages({ redirectUri: 'http://127.0.0.1:1/cb' });

  test('login and approve reach the redirect URI with a code', async () => {
    const s = await server();
    try {
      const final = await followAuthorization(`${s.base}/authorize`, { redirectUri: 'http://127.0.0.1:1/cb', username: 'alice', password: 'alice-pw' });
      assert.equal(final.searchParams.get('code'), 'abc');
    } finally {
      s.close();
    }
  });

  test('deny comes back with access_denied', async () => {
    const s = await server();
    try {
      const final = await followAuthorization(`${s.base}/authorize`, { redirectUri: 'http://127.0.0.1:1/cb', username: 'alice', password: 'alice-pw', choice: 'deny' });
      assert.equal(final.searchParams.get('error'), 'access_denied');
    } finally {
      s.close();
    }
  });

  test('a rejected login throws instead of looping', async () => {
    const s = await server();
    try {
      await assert.rejects(followAuthorization(`${s.base}/authorize`, { redirectUri: 'http://127.0.0.1:1/cb', username: 'alice', password: 'x' }), /login rejected.*bad login/);
    } finally {
      s.close();
    }
  });

  test('a page without a form throws with its text', async () => {
    const s = await server();
    try {
      await assert.rejects(followAuthorization(`${s.base}/noform`, { redirectUri: 'http://127.0.0.1:1/cb' }), /page without a form: Something broke/);
    } finally {
      s.close();
    }
  });
});

describe('proc', () => {
  test('stopProcess kills the whole process group', async () => {
    const port = await freePort();
    // A shell whose child (the server) would outlive a plain kill of the shell.
    const script = `require('http').createServer((q,r)=>r.end('up')).listen(${port},'127.0.0.1')`;
    const p = startProcess('sh', ['-c', `${process.execPath} -e "${script}"; sleep 60`], { name: 'group' });
    assert.equal(await waitForHttp(`http://127.0.0.1:${port}/`, { proc: p }), 200);
    const { signal } = await stopProcess(p);
    assert.equal(signal, 'SIGTERM');
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }));
  });

  test('waitForHttp fails fast when the process exits', async () => {
    const p = startProcess(process.execPath, ['-e', 'process.exit(3)'], { name: 'quitter' });
    await assert.rejects(waitForHttp(`http://127.0.0.1:${await freePort()}/`, { proc: p, timeoutMs: 10000 }), /quitter exited/);
  });
});

describe('gateway config helpers', () => {
  const oidc = authServerYAML({ key: 'K', as: [AS_LOAD_LIMITS, 'refresh_grace: 2s'], upstream: oidcUpstream('http://127.0.0.1:9', 'allowed_groups: [g]') });
  const stat = authServerYAML({
    key: 'K',
    scopes: '[mcp, "mcp:admin"]',
    upstream: staticUpstream([{ name: 'alice', groups: ['a', 'b'], hash: '$2a$10$x' }, { name: 'carol', hash: 'h' }]),
  });

  test('authServerYAML nests the lines under authorization_server and the upstream under it', () => {
    assert.equal(oidc, `
encryption_key: K
shutdown_timeout: 5s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    ${AS_LOAD_LIMITS}
    refresh_grace: 2s
    upstream:
      type: oidc
      issuer: http://127.0.0.1:9
      client_id: mcpgate
      client_secret: mcpgate-secret
      scopes: [openid, profile, email, groups]
      allow_private_issuer: true
      allowed_groups: [g]`);
  });

  test('staticUpstream: one line a user, groups only when given', () => {
    assert.ok(stat.endsWith(`
    scopes: [mcp, "mcp:admin"]
    upstream:
      type: static
      users:
        - { username: alice, email: alice@example.test, groups: [a, b], password_hash: "$2a$10$x" }
        - { username: carol, email: carol@example.test, password_hash: "h" }`), stat);
  });

  test('a fresh encryption key each time unless one is given', () => {
    const [a, b] = [authServerYAML({ upstream: '' }), authServerYAML({ upstream: '' })];
    assert.match(a, /^encryption_key: [A-Za-z0-9+/]{43}=$/m);
    assert.notEqual(a, b);
  });

  test('authorizeURL: PKCE S256 last, extra parameters before it', () => {
    const u = new URL(authorizeURL({ base: 'http://127.0.0.1:1' }, 'c1', 'http://127.0.0.1/cb', 'CH', { resource: 'http://r/mcp' }));
    assert.equal(u.pathname, '/authorize');
    assert.deepEqual([...u.searchParams.keys()], ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'resource', 'code_challenge', 'code_challenge_method']);
    assert.equal(u.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(u.searchParams.get('resource'), 'http://r/mcp');
  });

  test('mcpgate config check accepts what they build', { timeout: 300000 }, async () => {
    const dir = await tempDir();
    const hash = await hashPassword('pw');
    const withHash = authServerYAML({ key: 'K', upstream: staticUpstream([{ name: 'alice', groups: ['a'], hash }, { name: 'carol', hash }]) });
    for (const [name, head] of [['oidc', oidc], ['static', withHash]]) {
      const file = path.join(dir, `${name}.yaml`);
      await writeFile(file, `listen: 127.0.0.1:8080
public_url: http://127.0.0.1:8080${head.replace('encryption_key: K', `encryption_key: ${Buffer.alloc(32, 7).toString('base64')}`)}
policy: { roles: { all: { tools: ["*"] } }, groups: { a: [all] } }
backends: [ { name: demo, url: "http://127.0.0.1:9/mcp" } ]
store: { driver: memory }
`);
      const r = await mcpgateCLI(['config', 'check', file], { allowFail: true });
      assert.equal(r.code, 0, `${name}:\n${r.stdout}${r.stderr}`);
    }
    await cleanupTempDirs();
  });
});
