import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  pinoRedactPaths,
  redactHeaders,
  resolveUpstreamCredentials,
  secretHeaderNames,
  UpstreamCredentialError,
} from '../../../src/auth/upstream-credentials.js';
import { UpstreamHeadersSchema } from '../../../src/auth/schema.js';

const SECRET = 'ghp_s3cr3t-value-never-logged';

describe('upstream credentials', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'creds-'));
    await writeFile(join(dir, 'token'), `  ${SECRET}\n`);
    await writeFile(join(dir, 'two-lines'), 'a\nb\n');
    await writeFile(join(dir, 'empty'), '\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('resolves literal and file: values, names lower-cased', async () => {
    const creds = await resolveUpstreamCredentials(
      {
        github: { headers: { Authorization: 'file:token', 'X-Org': 'acme' } },
        db: { headers: { 'X-Token': `file:${join(dir, 'token')}` } },
        plain: {},
      },
      { baseDir: dir },
    );
    assert.deepEqual(creds.headersFor('github'), [
      { key: 'authorization', value: SECRET },
      { key: 'x-org', value: 'acme' },
    ]);
    assert.deepEqual(creds.headersFor('db'), [{ key: 'x-token', value: SECRET }]);
    assert.deepEqual(creds.headersFor('plain'), []);
    assert.deepEqual(creds.headersFor('unknown'), []);
    assert.deepEqual([...creds.headerNames].sort(), ['authorization', 'x-org', 'x-token']);
  });

  it('never prints its values', async () => {
    const creds = await resolveUpstreamCredentials({ github: { headers: { Authorization: 'file:token' } } }, { baseDir: dir });
    assert.ok(!JSON.stringify(creds).includes(SECRET));
    assert.ok(!inspect(creds, { depth: 10 }).includes(SECRET));
    assert.ok(!`${JSON.stringify({ creds })}`.includes(SECRET));
  });

  it('fails at load on unreadable, empty or multi-line files, without echoing contents', async () => {
    for (const [file, pattern] of [
      ['missing', /servers\.x\.headers\.X-T: cannot read .*missing: ENOENT/],
      ['empty', /value is empty/],
      ['two-lines', /single line/],
    ] as const) {
      await assert.rejects(
        resolveUpstreamCredentials({ x: { headers: { 'X-T': `file:${file}` } } }, { baseDir: dir }),
        (err: unknown) => err instanceof UpstreamCredentialError && pattern.test(err.message) && !err.message.includes('a\nb'),
      );
    }
  });

  it('redacts secret headers for logs', async () => {
    const creds = await resolveUpstreamCredentials({ s: { headers: { 'X-Upstream-Key': 'v' } } });
    const secret = secretHeaderNames(creds);
    for (const n of ['authorization', 'x-api-key', 'cookie', 'x-upstream-key']) assert.ok(secret.has(n), n);
    assert.deepEqual(
      redactHeaders(new Map([['Authorization', 'Bearer x'], ['x-upstream-key', 'v'], ['accept', 'application/json']]), secret),
      { Authorization: '[redacted]', 'x-upstream-key': '[redacted]', accept: 'application/json' },
    );
    assert.deepEqual(redactHeaders({ cookie: 'a=b', host: 'h' }, secret), { cookie: '[redacted]', host: 'h' });
    assert.deepEqual(pinoRedactPaths(['X-Upstream-Key']), ['headers["x-upstream-key"]', '*.headers["x-upstream-key"]', '*["x-upstream-key"]']);
  });

  it('refuses headers the gateway manages and values that could split headers', () => {
    assert.ok(UpstreamHeadersSchema.safeParse({ Authorization: 'Bearer x', 'X-Key': 'file:/run/secrets/k' }).success);
    for (const bad of [{ Host: 'x' }, { 'content-length': '1' }, { 'X-MCPGW-backend': 'x' }, { 'mcp-session-id': 'x' }, { 'bad name': 'x' }, { 'X-A': 'a\r\nX-B: b' }]) {
      assert.ok(!UpstreamHeadersSchema.safeParse(bad).success, JSON.stringify(bad));
    }
  });
});
