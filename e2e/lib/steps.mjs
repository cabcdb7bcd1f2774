// Test-side wrappers of mcp-client.mjs's runSteps: a run that fails the test at the first failed
// step, and the sign-in of a user through the TS SDK that every authorization-server test starts with.

import assert from 'node:assert/strict';
import { HeadlessOAuthProvider, runSteps } from '../mcp-client.mjs';

/** runSteps that fails the test with the failing step's number, operation and error. */
export async function steps(o) {
  const report = await runSteps(o);
  if (!report.ok) {
    const failed = report.steps.find((s) => !s.ok);
    assert.fail(`step ${report.steps.length} (${failed?.op} ${failed?.name ?? ''}) failed: ${JSON.stringify(failed?.error)}`);
  }
  return report;
}

/**
 * Signs `user` (password user-pw) in at the gateway's `path` through the TS SDK (discovery,
 * registration, login, consent) and lists the tools: `{oauth, tools}` (tool names, sorted).
 */
export async function signIn(gw, user, path = '/mcp') {
  const oauth = new HeadlessOAuthProvider({ user });
  const r = await steps({ url: `${gw.base}${path}`, oauth, steps: [{ op: 'tools/list' }] });
  return { oauth, tools: [...r.steps[0].result.tools].sort() };
}

/** The payload of a JWT, not verified: for assertions on what a token says. */
export const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
