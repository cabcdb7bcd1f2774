// A throwaway PostgreSQL schema for e2e tests, in the database MCPGATE_TEST_POSTGRES_DSN names
// (scripts/test.sh starts one), made and dropped with psql. The returned DSN's search_path points
// at it, as the Go tests' pgtest.SchemaDSN does.

import crypto from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { run } from './mcpgate.mjs';

/** The psql binary: on PATH, else the newest /usr/lib/postgresql/N/bin/psql; undefined if none. */
export function findPsql() {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(`${dir}/psql`)) return `${dir}/psql`;
  }
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
  return versions.map((v) => `/usr/lib/postgresql/${v}/bin/psql`).find((p) => existsSync(p));
}

/**
 * Why PostgreSQL tests cannot run here, or '' when they can.
 * @returns {string}
 */
export function postgresMissing() {
  if (!process.env.MCPGATE_TEST_POSTGRES_DSN) return 'MCPGATE_TEST_POSTGRES_DSN is not set';
  if (!findPsql()) return 'psql is not installed';
  return '';
}

/**
 * Creates a fresh schema; `drop()` removes it.
 * @returns {Promise<{dsn: string, schema: string, drop: () => Promise<void>}>}
 */
export async function createSchema() {
  const base = process.env.MCPGATE_TEST_POSTGRES_DSN;
  const psql = findPsql();
  const schema = `mcpgate_e2e_${crypto.randomBytes(6).toString('hex')}`;
  await run(psql, [base, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE SCHEMA ${schema}`]);
  const dsn = `${base}${base.includes('?') ? '&' : '?'}search_path=${schema}`;
  return {
    dsn,
    schema,
    drop: async () => {
      await run(psql, [base, '-qc', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { allowFail: true });
    },
  };
}
