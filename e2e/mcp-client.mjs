#!/usr/bin/env node
// A scriptable MCP client built on the official TypeScript SDK (StreamableHTTPClientTransport).
//
//   node mcp-client.mjs --url http://127.0.0.1:P/mcp [--token T | --oauth --user alice [--password P]
//        [--client-id ID [--client-secret S]] [--redirect-uri URI] [--scope S] [--consent approve|deny]]
//        [--protocol-version 2025-06-18] [--header "Name: value"]... (--script steps.json | --steps '[...]')
//
// Steps (JSON array; each is an object with "op"):
//   {"op":"initialize"}                         connect (implicit before the first other step)
//   {"op":"tools/list"}                          → {"tools": [names]}  ("full": true for the whole result)
//   {"op":"tools/call","name":"echo","args":{}}  → the CallToolResult
//   {"op":"resources/list"} {"op":"prompts/list"} {"op":"ping"}
//   {"op":"request","method":"m","params":{}}    any request, result passed through
//   {"op":"refresh"}                             OAuth mode: refresh the access token now
//   {"op":"expect-error","step":{...},"status":403,"code":-32602,"match":"regex"}
//        succeeds when the inner step fails (a thrown error, or a tool result with isError: true)
//        and every given criterion matches: status = HTTP status, code = JSON-RPC error code,
//        match = regular expression on the error message.
//
// Prints one JSON object: {"ok": bool, "protocolVersion": "...", "steps": [{op, ok, result|error}], "auth": {...}}
// Exit status: 0 when every step is ok, 1 when one failed, 2 on bad usage.

import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpError, ResultSchema, SUPPORTED_PROTOCOL_VERSIONS, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { CookieJar } from './lib/cookies.mjs';
import { followAuthorization } from './lib/forms.mjs';

export { SUPPORTED_PROTOCOL_VERSIONS, LATEST_PROTOCOL_VERSION };

/**
 * An in-memory OAuthClientProvider whose "browser" is followAuthorization: the redirect to the
 * authorization server is walked headlessly (login form, consent form) with a cookie jar, and the
 * code that comes back to the redirect URI is kept for transport.finishAuth().
 */
export class HeadlessOAuthProvider {
  /** Counters the test can assert on. */
  events = { registrations: 0, authorizations: 0, tokenSaves: 0 };
  #jar = new CookieJar();
  #clientInfo;
  #tokens;
  #verifier;
  #state;
  #discovery;
  #pendingCode;

  /**
   * @param {{user: string, password?: string, clientId?: string, clientSecret?: string, redirectUri?: string,
   *   scope?: string, consent?: string, clientMetadataUrl?: string, log?: (m: string) => void,
   *   onPage?: (url: URL, status: number, html: string) => void}} o
   */
  constructor(o) {
    this.o = o;
    // The redirect URI is never listened on: followAuthorization stops when it is reached.
    this.redirectUri = o.redirectUri ?? `http://127.0.0.1:${20000 + crypto.randomInt(40000)}/callback`;
    if (o.clientId) {
      this.#clientInfo = { client_id: o.clientId, ...(o.clientSecret && { client_secret: o.clientSecret }) };
    }
  }

  get redirectUrl() {
    return this.redirectUri;
  }

  /** A client ID metadata document URL: the SDK uses it as client_id when the server supports CIMD. */
  get clientMetadataUrl() {
    return this.o.clientMetadataUrl;
  }

  get clientMetadata() {
    return {
      client_name: 'mcpgate e2e client',
      redirect_uris: [this.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: this.o.clientSecret ? 'client_secret_basic' : 'none',
      ...(this.o.scope && { scope: this.o.scope }),
    };
  }

  state() {
    this.#state = crypto.randomBytes(16).toString('base64url');
    return this.#state;
  }

  clientInformation() {
    return this.#clientInfo;
  }

  saveClientInformation(info) {
    if (!this.#clientInfo || info.client_id !== this.#clientInfo.client_id) this.events.registrations++;
    this.#clientInfo = info;
  }

  tokens() {
    return this.#tokens;
  }

  saveTokens(tokens) {
    this.events.tokenSaves++;
    this.#tokens = tokens;
  }

  saveCodeVerifier(v) {
    this.#verifier = v;
  }

  codeVerifier() {
    if (!this.#verifier) throw new Error('no PKCE code verifier saved');
    return this.#verifier;
  }

  saveDiscoveryState(s) {
    this.#discovery = s;
  }

  discoveryState() {
    return this.#discovery;
  }

  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this.#clientInfo = undefined;
    if (scope === 'all' || scope === 'tokens') this.#tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this.#verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this.#discovery = undefined;
  }

  async redirectToAuthorization(authorizationUrl) {
    this.events.authorizations++;
    const final = await followAuthorization(authorizationUrl, {
      jar: this.#jar,
      redirectUri: this.redirectUri,
      username: this.o.user,
      password: this.o.password ?? `${this.o.user}-pw`,
      choice: this.o.consent ?? 'approve',
      log: this.o.log,
      onPage: this.o.onPage,
    });
    const p = final.searchParams;
    if (p.get('error')) throw new Error(`authorization failed: ${p.get('error')}: ${p.get('error_description') ?? ''}`);
    if (this.#state !== undefined && p.get('state') !== this.#state) throw new Error('authorization response: state mismatch');
    const code = p.get('code');
    if (!code) throw new Error('authorization response without code');
    this.#pendingCode = code;
  }

  /** The authorization code from the last redirect, once. */
  takeCode() {
    const c = this.#pendingCode;
    this.#pendingCode = undefined;
    return c;
  }
}

/** JSON-friendly description of an error from the SDK or the transport. */
function describeError(err) {
  const out = { message: err?.message ?? String(err), type: err?.constructor?.name ?? typeof err };
  if (err instanceof StreamableHTTPError && typeof err.code === 'number') out.status = err.code;
  if (err instanceof McpError) {
    out.code = err.code;
    if (err.data !== undefined) out.data = err.data;
  }
  if (err instanceof UnauthorizedError) out.status ??= 401;
  return out;
}

/**
 * Connects and runs `steps`, returning the report object (never throws for a failing step).
 * @param {{url: string, token?: string, headers?: Record<string, string>, oauth?: HeadlessOAuthProvider,
 *   protocolVersion?: string, steps: object[]}} o
 */
export async function runSteps(o) {
  const url = new URL(o.url);
  const headers = { ...o.headers };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  const provider = o.oauth;
  let client;
  let transport;

  function newConnection() {
    transport = new StreamableHTTPClientTransport(url, {
      authProvider: provider,
      requestInit: { headers },
    });
    if (o.protocolVersion) {
      // SDK 1.x always offers LATEST_PROTOCOL_VERSION in initialize and has no option to change
      // it, so rewrite the outgoing initialize request.
      const send = transport.send.bind(transport);
      transport.send = (message, opts) => {
        if (message?.method === 'initialize') {
          message = { ...message, params: { ...message.params, protocolVersion: o.protocolVersion } };
        }
        return send(message, opts);
      };
    }
    client = new Client({ name: 'mcpgate-e2e', version: '1.0.0' }, { capabilities: {} });
  }

  // After the SDK hands the authorization URL to the provider it throws UnauthorizedError; the
  // provider then holds a code. Exchange it and retry once.
  async function withAuth(fn) {
    try {
      return await fn();
    } catch (err) {
      const code = err instanceof UnauthorizedError ? provider?.takeCode() : undefined;
      if (!code) throw err;
      await transport.finishAuth(code);
      return fn();
    }
  }

  async function connect() {
    if (client) await client.close().catch(() => {});
    newConnection();
    try {
      try {
        await client.connect(transport);
      } catch (err) {
        const code = err instanceof UnauthorizedError ? provider?.takeCode() : undefined;
        if (!code) throw err;
        await transport.finishAuth(code);
        newConnection(); // a failed connect closes its transport
        await client.connect(transport);
      }
    } catch (err) {
      client = undefined; // the next step connects afresh
      throw err;
    }
    return {
      protocolVersion: transport.protocolVersion,
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      sessionId: transport.sessionId ?? null,
    };
  }

  async function exec(step) {
    if (!step || typeof step.op !== 'string') throw new Error(`bad step ${JSON.stringify(step)}: needs "op"`);
    if (step.op === 'initialize') return connect();
    if (step.op === 'expect-error') return expectError(step);
    if (!client) await connect();
    switch (step.op) {
      case 'tools/list': {
        const r = await withAuth(() => client.listTools(step.params));
        return step.full ? r : { tools: r.tools.map((t) => t.name) };
      }
      case 'tools/call':
        if (typeof step.name !== 'string') throw new Error('tools/call needs "name"');
        return withAuth(() => client.callTool({ name: step.name, arguments: step.args ?? {} }));
      case 'resources/list':
        return withAuth(() => client.listResources(step.params));
      case 'prompts/list':
        return withAuth(() => client.listPrompts(step.params));
      case 'ping':
        return withAuth(() => client.ping());
      case 'request':
        if (typeof step.method !== 'string') throw new Error('request needs "method"');
        return withAuth(() => client.request({ method: step.method, params: step.params }, ResultSchema));
      case 'refresh': {
        if (!provider) throw new Error('refresh needs --oauth');
        const before = provider.tokens();
        if (!before?.refresh_token) throw new Error('no refresh token to refresh with');
        const authorizations = provider.events.authorizations;
        const r = await auth(provider, { serverUrl: url });
        const after = provider.tokens();
        if (r !== 'AUTHORIZED' || provider.events.authorizations !== authorizations) {
          throw new Error('refresh failed: the client had to authorize again');
        }
        return {
          accessTokenChanged: after.access_token !== before.access_token,
          refreshTokenRotated: !!after.refresh_token && after.refresh_token !== before.refresh_token,
        };
      }
      default:
        throw new Error(`unknown op ${step.op}`);
    }
  }

  async function expectError(step) {
    let err;
    let result;
    try {
      result = await exec(step.step);
    } catch (e) {
      err = describeError(e);
    }
    if (!err && result?.isError === true) {
      err = { message: (result.content ?? []).map((c) => c.text ?? '').join(' '), type: 'ToolError', isError: true };
    }
    if (!err) throw new Error(`expected an error, got ${JSON.stringify(result).slice(0, 300)}`);
    const problems = [];
    if (step.status !== undefined && err.status !== step.status) problems.push(`status ${err.status} != ${step.status}`);
    if (step.code !== undefined && err.code !== step.code) problems.push(`code ${err.code} != ${step.code}`);
    if (step.match !== undefined && !new RegExp(step.match).test(err.message)) problems.push(`message does not match /${step.match}/`);
    if (problems.length) {
      const e = new Error(`unexpected error (${problems.join('; ')}): ${err.message}`);
      e.actual = err;
      throw e;
    }
    return { error: err };
  }

  const report = { ok: true, url: url.href, protocolVersion: null, steps: [] };
  try {
    for (const step of o.steps) {
      const entry = { op: step?.op };
      if (step?.op === 'tools/call') entry.name = step.name;
      try {
        entry.result = await exec(step);
        entry.ok = true;
      } catch (err) {
        entry.ok = false;
        entry.error = err.actual ? { ...describeError(err), actual: err.actual } : describeError(err);
        report.ok = false;
      }
      report.steps.push(entry);
      if (!entry.ok) break; // later steps depend on earlier ones
    }
  } finally {
    report.protocolVersion = transport?.protocolVersion ?? null;
    if (provider) report.auth = { ...provider.events };
    await client?.close().catch(() => {});
  }
  return report;
}

function usage(msg) {
  process.stderr.write(`mcp-client: ${msg}\nusage: node mcp-client.mjs --url URL [--token T | --oauth --user U] [--protocol-version V] (--script FILE | --steps JSON)\n`);
  process.exit(2);
}

async function main() {
  let v;
  try {
    ({ values: v } = parseArgs({
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        header: { type: 'string', multiple: true },
        oauth: { type: 'boolean', default: false },
        user: { type: 'string' },
        password: { type: 'string' },
        'client-id': { type: 'string' },
        'client-secret': { type: 'string' },
        'redirect-uri': { type: 'string' },
        scope: { type: 'string' },
        consent: { type: 'string' },
        'protocol-version': { type: 'string' },
        script: { type: 'string' },
        steps: { type: 'string' },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  if (!v.url) usage('--url is required');
  if (v.token && v.oauth) usage('--token and --oauth exclude each other');
  if (v.oauth && !v.user) usage('--oauth needs --user');
  if (!v.script === !v.steps) usage('give exactly one of --script and --steps');
  let steps;
  try {
    steps = JSON.parse(v.script ? readFileSync(v.script === '-' ? 0 : v.script, 'utf8') : v.steps);
  } catch (err) {
    usage(`cannot read steps: ${err.message}`);
  }
  if (!Array.isArray(steps)) usage('steps must be a JSON array');
  const headers = {};
  for (const h of v.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) usage(`bad --header ${h}`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  const pv = v['protocol-version'];
  if (pv && !SUPPORTED_PROTOCOL_VERSIONS.includes(pv)) {
    process.stderr.write(`mcp-client: warning: SDK does not support protocol version ${pv} (supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})\n`);
  }
  const log = v.verbose ? (m) => process.stderr.write(`mcp-client: ${m}\n`) : undefined;
  const oauth = v.oauth
    ? new HeadlessOAuthProvider({
        user: v.user,
        password: v.password,
        clientId: v['client-id'],
        clientSecret: v['client-secret'],
        redirectUri: v['redirect-uri'],
        scope: v.scope,
        consent: v.consent,
        log,
      })
    : undefined;
  const report = await runSteps({ url: v.url, token: v.token, headers, oauth, protocolVersion: pv, steps });
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (!report.ok) {
    const failed = report.steps.find((s) => !s.ok);
    process.stderr.write(`mcp-client: step ${report.steps.length} (${failed?.op}) failed: ${failed?.error?.message}\n`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`mcp-client: ${err.stack ?? err}\n`);
    process.exit(1);
  });
}
