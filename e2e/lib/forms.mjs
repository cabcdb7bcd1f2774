// Walks an OAuth authorization request through login and consent pages without a browser: it
// follows redirects with a cookie jar and submits the first <form> of each HTML page it meets,
// filling in username/password and choosing the approve (or deny) button. It works on any page
// built from plain forms: the e2e IdP's login page and mcpgate's login and consent pages.

import { CookieJar, jarFetch } from './cookies.mjs';

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** Decodes the HTML character references found in attribute values. */
export function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, ref) => {
    if (ref[0] === '#') {
      const cp = ref[1] === 'x' || ref[1] === 'X' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      return Number.isFinite(cp) && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
    }
    return ENTITIES[ref.toLowerCase()] ?? m;
  });
}

/** Parses the attributes of one start tag's inner text, e.g. `input type="hidden" name=x`. */
function parseAttrs(tag) {
  const attrs = {};
  const re = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // Skip the tag name itself.
  const body = tag.replace(/^<\s*[a-z0-9]+/i, '');
  let m;
  while ((m = re.exec(body)) !== null) {
    const name = m[1].toLowerCase();
    if (name in attrs) continue; // the first occurrence wins, as in HTML
    attrs[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/**
 * @typedef {{name: string, value: string, type: string}} Field
 * @typedef {{action: string, method: string, fields: Field[], buttons: Field[]}} Form
 */

/**
 * The first <form> of an HTML page: its action (absolute, resolved against `pageURL`), method,
 * successful fields (inputs with a name, checked boxes only; textareas) and submit buttons.
 * Returns undefined when the page has no form.
 * @returns {Form|undefined}
 */
export function parseFirstForm(html, pageURL) {
  const open = /<form\b[^>]*>/i.exec(html);
  if (!open) return undefined;
  const rest = html.slice(open.index + open[0].length);
  const close = rest.search(/<\/form\s*>/i);
  const inner = close < 0 ? rest : rest.slice(0, close);
  const fa = parseAttrs(open[0]);
  const form = {
    action: new URL(fa.action || pageURL, pageURL).href,
    method: (fa.method || 'get').toLowerCase(),
    fields: [],
    buttons: [],
  };
  const tagRe = /<(input|button|textarea)\b[^>]*>/gi;
  let m;
  while ((m = tagRe.exec(inner)) !== null) {
    const kind = m[1].toLowerCase();
    const a = parseAttrs(m[0]);
    if ('disabled' in a) continue;
    if (kind === 'button') {
      const type = (a.type || 'submit').toLowerCase();
      if (type === 'submit') form.buttons.push({ name: a.name ?? '', value: a.value ?? '', type });
      continue;
    }
    if (kind === 'textarea') {
      const end = inner.indexOf('</textarea', m.index);
      if (a.name) form.fields.push({ name: a.name, value: decodeEntities(inner.slice(m.index + m[0].length, end < 0 ? undefined : end)), type: 'textarea' });
      continue;
    }
    const type = (a.type || 'text').toLowerCase();
    if (type === 'submit' || type === 'image') {
      form.buttons.push({ name: a.name ?? '', value: a.value ?? '', type });
      continue;
    }
    if (!a.name || type === 'reset' || type === 'button' || type === 'file') continue;
    if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
    form.fields.push({ name: a.name, value: a.value ?? (type === 'checkbox' ? 'on' : ''), type });
  }
  return form;
}

/**
 * The body to submit for `form`: its fields with username/password filled in, plus the submit
 * button chosen by `choice` ('approve' or 'deny': a button whose name or value contains it,
 * e.g. name="action" value="approve"), else the first named submit button.
 * @param {Form} form
 * @param {{username?: string, password?: string, choice?: string}} input
 */
export function fillForm(form, { username, password, choice = 'approve' }) {
  const body = new URLSearchParams();
  for (const f of form.fields) {
    const n = f.name.toLowerCase();
    if (username !== undefined && ['username', 'login', 'user', 'email'].includes(n) && f.type !== 'hidden') {
      body.append(f.name, username);
    } else if (password !== undefined && f.type === 'password') {
      body.append(f.name, password);
    } else {
      body.append(f.name, f.value);
    }
  }
  const named = form.buttons.filter((b) => b.name);
  const want = choice.toLowerCase();
  const button =
    named.find((b) => b.value.toLowerCase() === want) ??
    named.find((b) => b.value.toLowerCase().includes(want) || b.name.toLowerCase().includes(want)) ??
    named[0];
  if (button) body.append(button.name, button.value);
  return body;
}

/** Plain text of an HTML page, shortened, for error messages. */
export function pageText(html, max = 400) {
  const t = html
    .replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return decodeEntities(t).slice(0, max);
}

/**
 * Follows an authorization request until the user agent would be sent to `redirectUri`, submitting
 * login and consent forms on the way. Returns the final redirect URL (with code/state or error).
 * Throws with a readable message when a page has no form, a login is rejected or too many steps pass.
 * @param {string|URL} authorizeURL
 * @param {{redirectUri: string, username?: string, password?: string, choice?: string, jar?: CookieJar, maxSteps?: number,
 *   log?: (msg: string) => void, onPage?: (url: URL, status: number, html: string) => void}} opts
 * @returns {Promise<URL>}
 */
export async function followAuthorization(authorizeURL, opts) {
  const jar = opts.jar ?? new CookieJar();
  const log = opts.log ?? (() => {});
  const maxSteps = opts.maxSteps ?? 25;
  const redirectBase = new URL(opts.redirectUri);
  const isRedirectTarget = (u) => u.origin === redirectBase.origin && u.pathname === redirectBase.pathname;
  let url = new URL(authorizeURL);
  /** @type {RequestInit} */
  let init = { method: 'GET' };
  const posted = new Map(); // form action -> times submitted, to detect a rejected login loop
  for (let step = 0; step < maxSteps; step++) {
    if (isRedirectTarget(url)) return url;
    log(`${init.method} ${url.origin}${url.pathname}`);
    const res = await jarFetch(jar, url, init);
    init = { method: 'GET' };
    if (res.status >= 300 && res.status < 400) {
      const loc = res.headers.get('location');
      await res.body?.cancel();
      if (!loc) throw new Error(`${url.href}: ${res.status} redirect without a Location header`);
      url = new URL(loc, url);
      continue;
    }
    const text = await res.text();
    opts.onPage?.(url, res.status, text);
    const type = res.headers.get('content-type') ?? '';
    if (!type.includes('html')) {
      throw new Error(`${url.origin}${url.pathname}: ${res.status} ${type}: ${text.slice(0, 400)}`);
    }
    // A meta refresh (an interstitial before a loopback redirect) counts as a redirect.
    const meta = /<meta[^>]+http-equiv\s*=\s*["']?refresh["']?[^>]*>/i.exec(text);
    if (meta) {
      const content = parseAttrs(meta[0]).content ?? '';
      const target = /url\s*=\s*['"]?([^'"]+)/i.exec(content);
      if (target) {
        url = new URL(decodeEntities(target[1].trim()), url);
        continue;
      }
    }
    const form = parseFirstForm(text, url.href);
    if (!form) {
      throw new Error(`${url.origin}${url.pathname}: ${res.status} page without a form: ${pageText(text)}`);
    }
    const hasPassword = form.fields.some((f) => f.type === 'password');
    const n = (posted.get(form.action) ?? 0) + 1;
    posted.set(form.action, n);
    if (hasPassword && n > 1) {
      throw new Error(`login rejected at ${url.origin}${url.pathname} (${res.status}): ${pageText(text)}`);
    }
    const body = fillForm(form, opts);
    const target = new URL(form.action);
    if (form.method === 'post') {
      // Browsers send the page's Origin on form POSTs; CSRF checks on consent pages may rely on it.
      init = { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', origin: url.origin } };
      url = target;
    } else {
      for (const [k, v] of body) target.searchParams.append(k, v);
      url = target;
    }
  }
  throw new Error(`authorization did not reach ${opts.redirectUri} within ${maxSteps} steps (last: ${url.href})`);
}
