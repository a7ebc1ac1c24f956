import { randomBytes } from 'node:crypto';
import { isWellFormedCredential, MAX_CREDENTIAL_LENGTH, MIN_API_KEY_LENGTH, sha256Hex } from './api-keys.js';

/** Where the command writes (injectable for tests). */
export interface CliOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}

const USAGE = `usage: mcp-gateway hash-key [--key <key> | --generate]

Prints the SHA-256 of an API key for auth.api_keys[].key_sha256.
The key is read from standard input unless --key is given (--key leaves it in shell history).
--generate creates a new random key and prints it with its hash.
`;

/** Prefix of generated keys, so secret scanners and people can recognise them. */
export const GENERATED_KEY_PREFIX = 'mcpgw_';

const processOutput: CliOutput = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

/**
 * `mcp-gateway hash-key`: prints the hex SHA-256 of a key given on stdin (or `--key`), or
 * generates a key with `--generate`. Returns the exit status (0 ok, 2 usage or bad key).
 *
 * @param argv the arguments after `hash-key`
 * @param stdin the key's source when `--key` is not given (process.stdin in main.ts)
 */
export async function hashKeyCommand(
  argv: readonly string[],
  stdin: AsyncIterable<Buffer | string> & { readonly isTTY?: boolean },
  out: CliOutput = processOutput,
): Promise<number> {
  let key: string | null = null;
  let generate = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      out.stdout(USAGE);
      return 0;
    } else if (arg === '--generate') {
      generate = true;
    } else if (arg === '--key') {
      const next = argv[i + 1];
      if (next === undefined) return usage(out, '--key needs a value');
      key = next;
      i++;
    } else if (arg.startsWith('--key=')) {
      key = arg.slice('--key='.length);
    } else {
      return usage(out, `unknown argument ${arg}`);
    }
  }
  if (generate && key !== null) return usage(out, '--generate and --key are exclusive');

  if (generate) {
    const fresh = GENERATED_KEY_PREFIX + randomBytes(32).toString('base64url');
    out.stdout(`key: ${fresh}\nkey_sha256: ${sha256Hex(fresh)}\n`);
    return 0;
  }
  if (key === null) {
    if (stdin.isTTY === true) out.stderr('Enter the key, then press Enter and Ctrl-D:\n');
    const read = await readAll(stdin);
    if (read === null) return usage(out, 'the key on standard input is too long');
    const lines = read.replace(/\r?\n$/, '');
    if (/[\r\n]/.test(lines)) return usage(out, 'expected one key on one line');
    key = lines.trim();
  }
  if (key === '') return usage(out, 'no key given');
  if (!isWellFormedCredential(key)) {
    return usage(out, 'keys must be visible ASCII without spaces or commas');
  }
  if (key.length < MIN_API_KEY_LENGTH) {
    return usage(out, `keys must be at least ${MIN_API_KEY_LENGTH} characters (they are stored as an unsalted hash); try --generate`);
  }
  out.stdout(`${sha256Hex(key)}\n`);
  return 0;
}

function usage(out: CliOutput, problem: string): number {
  out.stderr(`mcp-gateway hash-key: ${problem}\n\n${USAGE}`);
  return 2;
}

async function readAll(stdin: AsyncIterable<Buffer | string>): Promise<string | null> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += b.length;
    // A little slack over the longest key for the line ending.
    if (total > MAX_CREDENTIAL_LENGTH + 2) return null;
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}
