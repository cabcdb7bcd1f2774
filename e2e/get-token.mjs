#!/usr/bin/env node
// Mints tokens from the e2e IdP and prints the token response as one JSON line.
//
//   node get-token.mjs --issuer URL --user alice [--password P] [--resource URL] [--scope "openid groups mcp:tools"]
//                      [--client-id e2e-cli] [--client-secret S] [--redirect-uri http://127.0.0.1/cb] [--raw] [--verbose]
//   node get-token.mjs --issuer URL --client-credentials [--client-id e2e-cc] [--client-secret e2e-cc-secret]
//                      --resource URL [--scope "mcp:tools"] [--raw]
//
// --issuer defaults to $IDP_ISSUER. --raw prints only the access token. Exits 1 on failure.

import { parseArgs } from 'node:util';
import { getClientCredentialsToken, getUserToken } from './lib/oauth.mjs';

async function main() {
  const { values: v } = parseArgs({
    options: {
      issuer: { type: 'string', default: process.env.IDP_ISSUER },
      user: { type: 'string' },
      password: { type: 'string' },
      resource: { type: 'string', multiple: true },
      scope: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string' },
      'client-credentials': { type: 'boolean', default: false },
      raw: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!v.issuer) throw new Error('--issuer (or IDP_ISSUER) is required');
  const resource = v.resource?.length === 1 ? v.resource[0] : v.resource;
  let tokens;
  if (v['client-credentials']) {
    tokens = await getClientCredentialsToken({
      issuer: v.issuer,
      clientId: v['client-id'],
      clientSecret: v['client-secret'],
      resource,
      scope: v.scope,
    });
  } else {
    if (!v.user) throw new Error('--user (or --client-credentials) is required');
    tokens = await getUserToken({
      issuer: v.issuer,
      user: v.user,
      password: v.password,
      resource,
      scope: v.scope,
      clientId: v['client-id'],
      clientSecret: v['client-secret'],
      redirectUri: v['redirect-uri'],
      log: v.verbose ? (m) => process.stderr.write(`get-token: ${m}\n`) : undefined,
    });
  }
  process.stdout.write(v.raw ? `${tokens.access_token}\n` : `${JSON.stringify(tokens)}\n`);
}

main().catch((err) => {
  process.stderr.write(`get-token: ${err.message}\n`);
  process.exit(1);
});
