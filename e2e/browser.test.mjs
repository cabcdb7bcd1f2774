// Smoke tests of browser.mjs: Debian Chromium starts headless through playwright-core, takes a
// screenshot, and signs in at the e2e IdP. Needs /usr/bin/chromium (apt-get install -y chromium);
// set E2E_SKIP_BROWSER=1 to skip on a machine without it. Run: node --test

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ARTIFACTS_DIR, CHROMIUM_PATH, launchBrowser, loginAndConsent } from './browser.mjs';
import { startIdP } from './lib/idp.mjs';
import { discover, pkcePair } from './lib/oauth.mjs';
import { startFakeLoginPages } from './lib/fake-login-pages.mjs';

const skip = process.env.E2E_SKIP_BROWSER === '1' ? 'E2E_SKIP_BROWSER=1' : false;
// Nothing listens there: loginAndConsent only observes the request. (Chromium refuses "unsafe" ports such as 1.)
const REDIRECT = 'http://127.0.0.1:45678/cb';

describe('browser.mjs', { skip }, () => {
  let browser;
  let idp;
  let meta;
  before(async () => {
    assert.ok(existsSync(CHROMIUM_PATH), `Chromium missing at ${CHROMIUM_PATH}: apt-get update && apt-get install -y chromium`);
    [browser, idp] = await Promise.all([launchBrowser(), startIdP()]);
    meta = await discover(idp.issuer);
  });
  after(async () => {
    await browser?.close();
    await idp?.stop();
  });

  function authorizeURL(state) {
    const u = new URL(meta.authorization_endpoint);
    u.search = new URLSearchParams({
      response_type: 'code',
      client_id: 'e2e-cli',
      redirect_uri: REDIRECT,
      scope: 'openid groups',
      state,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
    });
    return u.href;
  }

  test('screenshot of a data: URL is a PNG in e2e/artifacts', async () => {
    await browser.page.goto('data:text/html,<h1 style="color:green">mcpgate e2e</h1>');
    assert.equal(await browser.page.locator('h1').innerText(), 'mcpgate e2e');
    const file = await browser.screenshot('smoke-data-url');
    assert.ok(file.startsWith(ARTIFACTS_DIR));
    const png = await readFile(file);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(png.length > 1000);
  });

  test('loginAndConsent signs alice in at the IdP and captures the redirect', async () => {
    const final = await loginAndConsent(browser.page, authorizeURL('st1'), 'alice', 'alice-pw', { redirectUri: REDIRECT, prefix: 'idp-alice' });
    assert.equal(final.origin + final.pathname, REDIRECT);
    assert.equal(final.searchParams.get('state'), 'st1');
    assert.equal(final.searchParams.get('iss'), idp.issuer);
    assert.ok(final.searchParams.get('code'));
    assert.ok(existsSync(`${ARTIFACTS_DIR}idp-alice-1-login.png`));
  });

  test('a wrong password is reported, not looped on', async () => {
    await browser.context.clearCookies(); // alice's IdP session would skip the login page
    await assert.rejects(
      loginAndConsent(browser.page, authorizeURL('st2'), 'bob', 'nope', { redirectUri: REDIRECT, prefix: 'idp-badpw' }),
      /login rejected.*Invalid username or password/s,
    );
  });

  describe('on pages shaped like mcpgate login + consent (hidden csrf, __Host- cookie, approve/deny)', () => {
    let pages;
    before(async () => {
      pages = await startFakeLoginPages({ redirectUri: REDIRECT });
    });
    after(() => pages?.close());

    test('approve', async () => {
      await browser.context.clearCookies();
      const final = await loginAndConsent(browser.page, `${pages.base}/authorize`, 'alice', 'alice-pw', { redirectUri: REDIRECT, prefix: 'fake-approve' });
      assert.equal(final.searchParams.get('code'), 'abc');
      assert.ok(existsSync(`${ARTIFACTS_DIR}fake-approve-2-consent.png`));
    });

    test('deny', async () => {
      await browser.context.clearCookies();
      const final = await loginAndConsent(browser.page, `${pages.base}/authorize`, 'alice', 'alice-pw', { redirectUri: REDIRECT, choice: 'deny', prefix: 'fake-deny' });
      assert.equal(final.searchParams.get('error'), 'access_denied');
    });

    test('a page without a form is an error with a screenshot', async () => {
      await assert.rejects(loginAndConsent(browser.page, `${pages.base}/noform`, 'alice', 'alice-pw', { redirectUri: REDIRECT, prefix: 'fake-noform' }), /page without a form.*Something broke/s);
      assert.ok(existsSync(`${ARTIFACTS_DIR}fake-noform-1-error.png`));
    });
  });
});
