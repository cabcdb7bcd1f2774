// Headless Chromium (Debian's /usr/bin/chromium, never a downloaded build) driven by
// playwright-core, for login/consent tests through real HTML pages.
//
//   const b = await launchBrowser();
//   const final = await loginAndConsent(b.page, authorizeURL, 'alice', 'alice-pw', { redirectUri });
//   await b.close();
//
// Install the browser with: apt-get update && apt-get install -y chromium

import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS_DIR = fileURLToPath(new URL('./artifacts/', import.meta.url));

// --headless comes from playwright's `headless: true`; --user-data-dir from launchPersistentContext.
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches Chromium with a fresh profile directory (removed by close()).
 * @param {{executablePath?: string, timeoutMs?: number}} [opts]
 * @returns {Promise<{context: import('playwright-core').BrowserContext, page: import('playwright-core').Page,
 *   screenshot: (name: string) => Promise<string>, close: () => Promise<void>}>}
 */
export async function launchBrowser(opts = {}) {
  const executablePath = opts.executablePath ?? CHROMIUM_PATH;
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium not found at ${executablePath}: apt-get update && apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-e2e-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      timeout: opts.timeoutMs ?? 30000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    screenshot: (name) => screenshot(page, name),
    close: async () => {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page PNG screenshot as e2e/artifacts/<name>.png and returns its path. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '_')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const SUBMIT = 'button[type=submit], button:not([type]), input[type=submit]';

/**
 * Opens `authorizeURL` and completes every login and consent page on the way until the browser
 * is sent to `redirectUri` (nothing needs to listen there: the request is observed and its load
 * failure ignored; Chromium refuses "unsafe" ports such as 1 or 9 outright). On a page
 * with a password field it fills the username (name username/login/email, else the first text
 * field) and password and submits; on any other page with a form it clicks the button whose value
 * or text is `choice` (default "approve"), else the first submit button. Screenshots of every page
 * go to e2e/artifacts/<prefix>-<n>-<login|consent|error>.png.
 * @param {import('playwright-core').Page} page
 * @param {string} authorizeURL
 * @param {string} user
 * @param {string} password
 * @param {{redirectUri: string, choice?: string, prefix?: string, maxSteps?: number, timeoutMs?: number}} opts
 * @returns {Promise<URL>} the URL the browser was redirected to (with code/state or error)
 */
export async function loginAndConsent(page, authorizeURL, user, password, opts) {
  const redirect = new URL(opts.redirectUri);
  const prefix = opts.prefix ?? 'flow';
  const timeout = opts.timeoutMs ?? 15000;
  const choice = (opts.choice ?? 'approve').toLowerCase();
  let final;
  // Watch requests rather than route them: playwright does not route the follow-ups of
  // redirects, and the last hop is a redirect. The page itself then fails to load, which is fine.
  // Only this flow's redirect (same state): on a loaded machine the previous flow's last hop can
  // still be in flight when this one starts, and must not end it.
  const state = URL.parse(authorizeURL)?.searchParams.get('state') ?? null;
  const onRequest = (req) => {
    const u = URL.parse(req.url());
    if (!final && u && u.origin === redirect.origin && u.pathname === redirect.pathname && (state === null || u.searchParams.get('state') === state)) final = u;
  };
  page.on('request', onRequest);
  // Navigation to the (unserved) redirect URI fails; that failure is the expected end. Wait for
  // Chromium's error page to commit, or it would interrupt the caller's next navigation.
  const settle = async (p) => {
    try {
      await p;
    } catch (err) {
      if (!final) throw err;
      await page.waitForURL((u) => u.protocol === 'chrome-error:', { timeout: 5000 }).catch(() => {});
    }
  };
  try {
    await settle(page.goto(authorizeURL, { waitUntil: 'domcontentloaded', timeout }));
    const loginPagesSeen = new Set();
    for (let step = 1; step <= (opts.maxSteps ?? 10); step++) {
      if (final) return final;
      const here = new URL(page.url());
      const pw = page.locator('input[type=password]');
      const form = page.locator('form');
      let submit;
      if ((await pw.count()) > 0) {
        // The same login form again (by its action) means the last submission was rejected.
        const loginForm = page.locator('form').filter({ has: pw }).first();
        const key = (await loginForm.count()) > 0 ? await loginForm.evaluate((f) => f.action) : here.origin + here.pathname;
        if (loginPagesSeen.has(key)) {
          await screenshot(page, `${prefix}-${step}-error`);
          throw new Error(`login rejected at ${key}: ${(await page.locator('body').innerText()).slice(0, 300)}`);
        }
        loginPagesSeen.add(key);
        const userField = page.locator('input[name=username], input[name=login], input[name=email], input[type=email]').or(page.locator('input[type=text], input:not([type])')).first();
        await userField.fill(user);
        await pw.first().fill(password);
        await screenshot(page, `${prefix}-${step}-login`);
        submit = loginForm.locator(SUBMIT).first();
      } else if ((await form.count()) > 0) {
        await screenshot(page, `${prefix}-${step}-consent`);
        const buttons = form.first().locator(SUBMIT);
        const n = await buttons.count();
        if (n === 0) throw new Error(`form without a submit button at ${here.href}`);
        submit = buttons.first();
        for (let i = 0; i < n; i++) {
          const b = buttons.nth(i);
          const label = `${(await b.getAttribute('value')) ?? ''} ${(await b.textContent()) ?? ''}`.toLowerCase();
          if (label.includes(choice)) {
            submit = b;
            break;
          }
        }
      } else {
        await screenshot(page, `${prefix}-${step}-error`);
        throw new Error(`page without a form at ${here.href}: ${(await page.locator('body').innerText()).slice(0, 300)}`);
      }
      await settle(Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded', timeout }), submit.click({ timeout })]));
    }
    if (final) return final;
    throw new Error(`did not reach ${opts.redirectUri} (last page ${page.url()})`);
  } finally {
    page.off('request', onRequest);
  }
}
