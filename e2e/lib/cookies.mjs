// A small RFC 6265 cookie jar and a fetch wrapper that uses it, so scripts can walk login and
// consent pages over plain HTTP the way a browser would.

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Default path of a cookie set by a response to `url` (RFC 6265 §5.1.4). */
function defaultPath(url) {
  const p = url.pathname;
  if (!p.startsWith('/') || p.lastIndexOf('/') === 0) return '/';
  return p.slice(0, p.lastIndexOf('/'));
}

/** RFC 6265 §5.1.4 path-match. */
function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** RFC 6265 §5.1.3 domain-match (hostnames only; IP addresses must match exactly). */
function domainMatches(host, domain) {
  if (host === domain) return true;
  return !/^[\d.]+$|^\[/.test(host) && host.endsWith(`.${domain}`);
}

export class CookieJar {
  /** @type {Map<string, {name: string, value: string, domain: string, hostOnly: boolean, path: string, secure: boolean, expires: number}>} */
  #cookies = new Map();

  /** Stores the cookies from a response's Set-Cookie headers (RFC 6265 §5.2, §5.3). */
  store(url, headers) {
    const u = new URL(url);
    const lines = typeof headers.getSetCookie === 'function' ? headers.getSetCookie() : [];
    for (const line of lines) this.#storeOne(u, line);
  }

  #storeOne(url, line) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const host = url.hostname.toLowerCase();
    const c = { name, value, domain: host, hostOnly: true, path: defaultPath(url), secure: false, expires: Infinity };
    let maxAgeSeen = false;
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const val = i < 0 ? '' : attr.slice(i + 1).trim();
      if (key === 'max-age') {
        const n = Number.parseInt(val, 10);
        if (!Number.isNaN(n)) {
          c.expires = n <= 0 ? 0 : Date.now() + n * 1000;
          maxAgeSeen = true;
        }
      } else if (key === 'expires' && !maxAgeSeen) {
        const t = Date.parse(val);
        if (!Number.isNaN(t)) c.expires = t;
      } else if (key === 'domain' && val) {
        const d = val.replace(/^\./, '').toLowerCase();
        if (!domainMatches(host, d)) return; // a cookie for another domain: reject it
        c.domain = d;
        c.hostOnly = false;
      } else if (key === 'path' && val.startsWith('/')) {
        c.path = val;
      } else if (key === 'secure') {
        c.secure = true;
      }
    }
    // Cookie prefixes (RFC 6265bis §4.1.3): enforce them as browsers do, so a test sees what a browser sees.
    if (name.startsWith('__Secure-') && !c.secure) return;
    if (name.startsWith('__Host-') && (!c.secure || !c.hostOnly || c.path !== '/')) return;
    if (c.secure && !this.#trustworthy(url)) return;
    const key = `${c.domain};${c.path};${name}`;
    if (c.expires <= Date.now()) {
      this.#cookies.delete(key);
    } else {
      this.#cookies.set(key, c);
    }
  }

  // Browsers treat https and loopback http origins as secure contexts.
  #trustworthy(url) {
    return url.protocol === 'https:' || LOOPBACK_HOSTS.has(url.hostname);
  }

  /** The Cookie header value for a request to `url`, or '' when no cookie applies. */
  header(url) {
    const u = new URL(url);
    const host = u.hostname.toLowerCase();
    const now = Date.now();
    const out = [];
    for (const [key, c] of this.#cookies) {
      if (c.expires <= now) {
        this.#cookies.delete(key);
        continue;
      }
      if (c.hostOnly ? host !== c.domain : !domainMatches(host, c.domain)) continue;
      if (!pathMatches(u.pathname, c.path)) continue;
      if (c.secure && !this.#trustworthy(u)) continue;
      out.push(c);
    }
    // Longer paths first (RFC 6265 §5.4).
    out.sort((a, b) => b.path.length - a.path.length);
    return out.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  /** Names of the cookies currently held, for diagnostics (values are never exposed). */
  names() {
    return [...this.#cookies.values()].map((c) => c.name);
  }
}

/**
 * fetch with a cookie jar and without following redirects: the caller decides where to go next.
 * @param {CookieJar} jar
 * @param {string|URL} url
 * @param {RequestInit} [init]
 */
export async function jarFetch(jar, url, init = {}) {
  const headers = new Headers(init.headers);
  const cookie = jar.header(url);
  if (cookie) headers.set('cookie', cookie);
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(url, res.headers);
  return res;
}
