// Linked upstream accounts (issue 13.5): a backend needs the user's token at a provider other than
// the sign-in IdP — here a second oidc-provider acting as "GitHub". The official TS SDK client signs
// in through mcpgate (authorization_server mode, the first oidc-provider); its first tool call on the
// backend gets the MCP 2025-11-25 URL elicitation required error (-32042) with the link URL;
// Chromium opens it, signs in to mcpgate at the login IdP (bob's browser is refused), sees the
// confirm page, approves, signs in at "GitHub"; the next call succeeds and the backend (a small
// TS SDK MCP server) receives GitHub's token — accepted by GitHub's userinfo, not by the sign-in
// IdP's — and never mcpgate's own token; near its expiry it is refreshed at "GitHub". The audit log has
// LINK_STARTED, LINK_FAILED (bob) and LINK_COMPLETED and no token. Behind an aggregated endpoint the call
// gets the same elicitation, and the linked token once linked.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { runSteps, HeadlessOAuthProvider } from './mcp-client.mjs';
import { jwtClaims as claims } from './lib/steps.mjs';
import { startIdP } from './lib/idp.mjs';
import { discover } from './lib/oauth.mjs';
import { stopAll } from './lib/proc.mjs';
import { startStatelessBackend } from './lib/stateless-backend.mjs';
import { authServerYAML, buildMcpgate, cleanupTempDirs, oidcUpstream, startMcpgate } from './lib/mcpgate.mjs';

let idp; // the sign-in IdP
let gh; // the linked provider ("GitHub")
let backend;
/** @type {import('./lib/mcpgate.mjs').Gateway} */ let gw;

/** userinfo of `token` at `issuer`, or null when the token is not accepted there. */
async function userinfo(issuer, token) {
  const { userinfo_endpoint: ep } = await discover(issuer);
  const r = await fetch(ep, { headers: { authorization: `Bearer ${token}` } });
  return r.ok ? r.json() : null;
}

/**
 * An MCP server (official TS SDK, stateless) that records every Authorization header it gets and
 * has one tool, gh_whoami, that asks "GitHub" who the bearer token belongs to.
 */
function startGitHubBackend() {
  return startStatelessBackend({
    name: 'github-backend',
    setup: (mcp, auth) => {
      mcp.registerTool('gh_whoami', { description: 'Who the GitHub token belongs to.' }, async () => {
        const m = /^Bearer (\S+)$/.exec(auth);
        const me = m ? await userinfo(gh.issuer, m[1]) : null;
        if (!me) return { isError: true, content: [{ type: 'text', text: 'no valid GitHub token' }] };
        return { content: [{ type: 'text', text: JSON.stringify({ sub: me.sub }) }] };
      });
      return true;
    },
  });
}

before(async () => {
  [idp, gh] = await Promise.all([
    startIdP(),
    startIdP({
      // Short-lived tokens at "GitHub": with upstream_refresh_skew 57s, a linked token is
      // refreshed 3 s after it was issued.
      env: { IDP_ACCESS_TOKEN_TTL: '60' },
      clients: [
        {
          // mcpgate's client at "GitHub": confidential; native so that any loopback port matches.
          client_id: 'gh-client',
          client_secret: 'gh-secret',
          application_type: 'native',
          redirect_uris: ['http://127.0.0.1/link/gh/callback'],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
    }),
    buildMcpgate(),
  ]);
  backend = await startGitHubBackend();
  gw = await startMcpgate({
    name: 'linked',
    config: ({ dir }) => `${authServerYAML({ as: ['upstream_refresh_skew: 57s'], upstream: oidcUpstream(idp.issuer) })}
    linked_providers:
      - name: gh
        display_name: GitHub (e2e)
        issuer: ${gh.issuer}
        client_id: gh-client
        client_secret: gh-secret
        scopes: [openid, profile]
        allow_private_network: true
policy:
  roles:
    admin: { tools: ["*"] }
  groups:
    mcp-admins: [admin]
backends:
  - name: github
    path: /mcp
    url: ${backend.url}
    credential: { type: linked_token, provider: gh }
endpoints:
  - { path: /all, backends: [github] }
store: { driver: sqlite, dsn: ${dir}/mcpgate.db }
audit: { sink: file, path: ${dir}/audit.log }
`,
  });
});

after(async () => {
  await backend?.close();
  await stopAll();
  await cleanupTempDirs();
});


test('a tool call links the GitHub account in the browser; the backend then gets GitHub\'s token, never mcpgate\'s', async () => {
  const oauth = new HeadlessOAuthProvider({ user: 'alice' });
  const url = `${gw.base}/mcp`;

  // 1. Not linked: listing works (forwarded without any credential), the call gets the link URL.
  const first = await runSteps({ url, oauth, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'gh_whoami' }] });
  assert.ok(first.steps[0].ok, JSON.stringify(first.steps[0]));
  assert.deepEqual(first.steps[0].result.tools, ['gh_whoami']);
  const err = first.steps[1].error;
  assert.ok(!first.steps[1].ok && err, JSON.stringify(first.steps[1]));
  assert.equal(err.code, -32042, JSON.stringify(err));
  assert.equal(err.type, 'UrlElicitationRequiredError', 'the TS SDK recognises the URL elicitation');
  const [el] = err.data.elicitations;
  assert.equal(el.mode, 'url');
  assert.ok(el.elicitationId);
  assert.match(el.url, new RegExp(`^${gw.base}/link/gh\\?id=[\\w-]{43}$`));
  assert.match(el.message, /GitHub \(e2e\)/);
  const gatewayToken = oauth.tokens().access_token;
  const tsid = claims(gatewayToken).tsid;
  const seenBefore = backend.seen.length;
  assert.ok(backend.seen.every((h) => h === ''), `the backend got a credential before the link: ${backend.seen}`);

  // 2. The link URL reaches bob's browser first: it has no mcpgate sign-in, so it signs in at the
  // login IdP, as bob, and is refused; the URL is spent.
  const { launchBrowser, loginAndConsent, screenshot } = await import('./browser.mjs');
  const other = await launchBrowser();
  try {
    const back = await loginAndConsent(other.page, el.url, 'bob', 'bob-pw', { redirectUri: `${gw.base}/callback`, prefix: 'linked-bob' });
    assert.equal(back.origin, gw.base, 'the link asked for a sign-in at the login IdP');
    await other.page.waitForFunction(() => document.body?.innerText.includes('another user'), null, { timeout: 15000 });
    await screenshot(other.page, 'linked-bob-refused');
    assert.match(await other.page.locator('body').innerText(), /made for another user of this server/);
  } finally {
    await other.close();
  }
  const again = await runSteps({ url, oauth, steps: [{ op: 'tools/call', name: 'gh_whoami' }] });
  const link = again.steps[0].error?.data?.elicitations?.[0]?.url;
  assert.ok(link && link !== el.url, `a new link URL after the first was spent: ${JSON.stringify(again.steps[0])}`);

  // 3. Alice's Chromium opens the new link: it signs in at the login IdP as alice (no mcpgate
  // sign-in in this browser yet), sees the confirm page naming GitHub and her mcpgate user,
  // approves, and signs in at "GitHub" (its own login and consent).
  const b = await launchBrowser();
  try {
    await loginAndConsent(b.page, link, 'alice', 'alice-pw', { redirectUri: `${gw.base}/callback`, prefix: 'linked-signin' });
    await b.page.waitForFunction(() => document.querySelector('h1')?.innerText.startsWith('Link your'), null, { timeout: 15000 });
    await screenshot(b.page, 'linked-confirm');
    assert.equal(await b.page.locator('h1').innerText(), 'Link your GitHub (e2e) account to mcpgate user alice?');
    const confirm = b.page.url();
    assert.match(confirm, new RegExp(`^${gw.base}/link/gh\\?req=`));
    await loginAndConsent(b.page, confirm, 'alice', 'alice-pw', { redirectUri: `${gw.base}/link/gh/callback`, prefix: 'linked', choice: 'approve' });
    await b.page.waitForFunction(() => document.body?.innerText.includes('account is linked'), null, { timeout: 15000 });
    await screenshot(b.page, 'linked-done');
    assert.match(await b.page.locator('h1').innerText(), /Your GitHub \(e2e\) account is linked/);
    // The link URL is single use, in this browser too.
    await b.page.goto(link);
    assert.match(await b.page.locator('body').innerText(), /expired or was already used/);
  } finally {
    await b.close();
  }

  // 4. The same session (same grant) now calls the tool: the backend gets GitHub's token for alice.
  const second = await runSteps({ url, oauth, steps: [{ op: 'tools/call', name: 'gh_whoami' }, { op: 'tools/call', name: 'gh_whoami' }] });
  assert.ok(second.ok, JSON.stringify(second.steps));
  assert.equal(claims(oauth.tokens().access_token).tsid, tsid, 'the same grant');
  assert.deepEqual(JSON.parse(second.steps[0].result.content[0].text), { sub: 'alice' });

  const after = backend.seen.slice(seenBefore).filter(Boolean);
  assert.ok(after.length >= 2, `the backend saw ${after.length} authorized requests`);
  const linked = after[after.length - 1].slice('Bearer '.length);
  assert.ok(!backend.seen.some((h) => h.includes(gatewayToken)), "mcpgate's own token reached the backend");
  for (const h of new Set(after)) {
    const tok = h.slice('Bearer '.length);
    assert.equal((await userinfo(gh.issuer, tok))?.sub, 'alice', "GitHub's token");
    assert.equal(await userinfo(idp.issuer, tok), null, "not the sign-in IdP's token");
  }

  // 5. Near its expiry the linked token is refreshed at "GitHub" (refresh token grant): the
  // backend gets a new token, still GitHub's for alice, and the user is not asked again.
  await new Promise((r) => setTimeout(r, 3500));
  const seenBeforeRefresh = backend.seen.length;
  const third = await runSteps({ url, oauth, steps: [{ op: 'tools/call', name: 'gh_whoami' }] });
  assert.ok(third.ok, JSON.stringify(third.steps));
  assert.deepEqual(JSON.parse(third.steps[0].result.content[0].text), { sub: 'alice' });
  const refreshed = backend.seen.slice(seenBeforeRefresh).filter(Boolean).pop().slice('Bearer '.length);
  assert.notEqual(refreshed, linked, 'the linked token was refreshed');
  assert.equal((await userinfo(gh.issuer, refreshed))?.sub, 'alice');

  // 6. Audit: started, failed (bob), completed, for this grant, without a token.
  const log = await readFile(gw.auditPath, 'utf8');
  const recs = log.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  for (const event of ['LINK_STARTED', 'LINK_COMPLETED']) {
    const r = recs.find((x) => x.event === event);
    assert.ok(r, `no ${event} record`);
    assert.equal(r.session_id, tsid);
    assert.equal(r.method, 'link/gh');
    assert.equal(r.subject, 'alice');
  }
  assert.ok(!log.includes(linked) && !log.includes(refreshed), 'a linked token is in the audit log');
  assert.ok(!log.includes(gatewayToken), 'the client token is in the audit log');
  assert.ok(!log.includes(new URL(el.url).searchParams.get('id')), 'the link ID is in the audit log');
  assert.ok(
    recs.some((x) => x.event === 'LINK_FAILED' && x.session_id === tsid && /another user/.test(x.reason)),
    "no LINK_FAILED record for bob's sign-in",
  );
});

test('behind an aggregated endpoint, the call gets the same link error, and the linked token once linked', async () => {
  // Another sign-in (its own grant, for the aggregate's resource): its links are its own.
  const oauth = new HeadlessOAuthProvider({ user: 'alice' });
  const url = `${gw.base}/all`;
  const first = await runSteps({ url, oauth, steps: [{ op: 'tools/list' }, { op: 'tools/call', name: 'github__gh_whoami' }] });
  assert.ok(first.steps[0].ok, JSON.stringify(first.steps[0]));
  assert.deepEqual(first.steps[0].result.tools, ['github__gh_whoami']);
  const err = first.steps[1].error;
  assert.equal(err?.code, -32042, JSON.stringify(first.steps[1]));
  assert.equal(err.type, 'UrlElicitationRequiredError', 'the TS SDK recognises the URL elicitation');
  const [el] = err.data.elicitations;
  assert.equal(el.mode, 'url');
  assert.match(el.url, new RegExp(`^${gw.base}/link/gh\\?id=[\\w-]{43}$`));
  assert.match(el.message, /backend github needs your GitHub \(e2e\) account/);

  const { launchBrowser, loginAndConsent } = await import('./browser.mjs');
  const b = await launchBrowser();
  try {
    await loginAndConsent(b.page, el.url, 'alice', 'alice-pw', { redirectUri: `${gw.base}/callback`, prefix: 'linked-agg-signin' });
    await b.page.waitForFunction(() => document.querySelector('h1')?.innerText.startsWith('Link your'), null, { timeout: 15000 });
    await loginAndConsent(b.page, b.page.url(), 'alice', 'alice-pw', { redirectUri: `${gw.base}/link/gh/callback`, prefix: 'linked-agg', choice: 'approve' });
    await b.page.waitForFunction(() => document.body?.innerText.includes('account is linked'), null, { timeout: 15000 });
  } finally {
    await b.close();
  }

  const seenBefore = backend.seen.length;
  const second = await runSteps({ url, oauth, steps: [{ op: 'tools/call', name: 'github__gh_whoami' }] });
  assert.ok(second.ok, JSON.stringify(second.steps));
  assert.deepEqual(JSON.parse(second.steps[0].result.content[0].text), { sub: 'alice' });
  const sent = backend.seen.slice(seenBefore).filter(Boolean);
  assert.ok(sent.length > 0, 'the backend got no credential');
  for (const h of new Set(sent)) assert.equal((await userinfo(gh.issuer, h.slice('Bearer '.length)))?.sub, 'alice', "GitHub's token");
  assert.ok(!backend.seen.some((h) => h.includes(oauth.tokens().access_token)), "mcpgate's own token reached the backend");
});
