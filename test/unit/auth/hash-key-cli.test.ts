import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sha256Hex } from '../../../src/auth/api-keys.js';
import { GENERATED_KEY_PREFIX, hashKeyCommand } from '../../../src/auth/hash-key-cli.js';

const KEY = 'mcpgw_0123456789abcdefghij';

async function run(argv: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  async function* stdin(): AsyncGenerator<Buffer> {
    if (input !== '') yield Buffer.from(input);
  }
  const code = await hashKeyCommand(argv, stdin(), { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

describe('mcp-gateway hash-key', () => {
  it('hashes a key read from stdin (one trailing newline allowed)', async () => {
    assert.deepEqual(await run([], `${KEY}\n`), { code: 0, stdout: `${sha256Hex(KEY)}\n`, stderr: '' });
    assert.equal((await run([], `${KEY}\r\n`)).stdout, `${sha256Hex(KEY)}\n`);
    assert.equal((await run([], KEY)).stdout, `${sha256Hex(KEY)}\n`);
  });

  it('hashes a key given with --key', async () => {
    assert.equal((await run(['--key', KEY])).stdout, `${sha256Hex(KEY)}\n`);
    assert.equal((await run([`--key=${KEY}`])).stdout, `${sha256Hex(KEY)}\n`);
  });

  it('generates a key with its hash', async () => {
    const r = await run(['--generate']);
    assert.equal(r.code, 0);
    const m = /^key: (\S+)\nkey_sha256: ([0-9a-f]{64})\n$/.exec(r.stdout);
    assert.ok(m !== null, r.stdout);
    assert.ok(m[1]!.startsWith(GENERATED_KEY_PREFIX));
    assert.equal(m[2], sha256Hex(m[1]!));
  });

  it('refuses short, empty, multi-line and malformed keys and bad arguments', async () => {
    for (const [argv, input, pattern] of [
      [[], 'short\n', /at least 16/],
      [[], '', /no key/],
      [[], `${KEY}\n${KEY}\n`, /one key/],
      [['--key', 'has spaces in it, really long'], '', /visible ASCII/],
      [['--key'], '', /needs a value/],
      [['--bogus'], '', /unknown argument/],
      [['--generate', '--key', KEY], '', /exclusive/],
    ] as const) {
      const r = await run([...argv], input);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, pattern);
    }
    assert.match((await run(['--help'])).stdout, /usage: mcp-gateway hash-key/);
  });
});
