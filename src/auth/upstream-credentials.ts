import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { inspect } from 'node:util';
import type { UpstreamHeadersConfig } from './schema.js';

/** One header to set on requests to an upstream. */
export interface InjectedHeader {
  /** Lower-case header name. */
  readonly key: string;
  readonly value: string;
}

/** Headers whose values are secret wherever they appear, configured or not. */
export const ALWAYS_SECRET_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'cookie',
  'set-cookie',
];

const FILE_PREFIX = 'file:';
const REDACTED = '[redacted]';

/** How to read `file:` values (injectable for tests). */
export interface CredentialSourceOptions {
  /** Directory relative `file:` paths are resolved against (the config file's); default: cwd. */
  readonly baseDir?: string;
  readonly readFile?: (path: string) => Promise<string>;
}

/** A `servers.<name>.headers` value could not be resolved; the message names the field, never the value. */
export class UpstreamCredentialError extends Error {
  override readonly name = 'UpstreamCredentialError';
}

/**
 * The per-server headers the gateway injects instead of passing client tokens through. Values
 * are resolved once at load; the object refuses to print them (JSON and `util.inspect` show
 * only names), so logging it by accident leaks nothing.
 */
export class UpstreamCredentials {
  private readonly byServer: ReadonlyMap<string, readonly InjectedHeader[]>;
  /** Lower-case names of every injected header, for redaction. */
  readonly headerNames: ReadonlySet<string>;

  constructor(byServer: ReadonlyMap<string, readonly InjectedHeader[]>) {
    this.byServer = byServer;
    const names = new Set<string>();
    for (const headers of byServer.values()) for (const h of headers) names.add(h.key);
    this.headerNames = names;
  }

  /** Headers to set (replacing any the client sent under the same names) on requests to a server. */
  headersFor(server: string): readonly InjectedHeader[] {
    return this.byServer.get(server) ?? NO_HEADERS;
  }

  /** Header names per server, values withheld. */
  toJSON(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [server, headers] of this.byServer) out[server] = headers.map((h) => h.key);
    return out;
  }

  [inspect.custom](): string {
    return `UpstreamCredentials ${JSON.stringify(this.toJSON())}`;
  }
}

const NO_HEADERS: readonly InjectedHeader[] = Object.freeze([]);

/**
 * Resolves every server's `headers`: literal values as they are (`${ENV}` was already substituted
 * by the loader), `file:<path>` by reading the file once, trimmed.
 */
export async function resolveUpstreamCredentials(
  servers: Readonly<Record<string, { readonly headers?: UpstreamHeadersConfig | undefined }>>,
  opts: CredentialSourceOptions = {},
): Promise<UpstreamCredentials> {
  const read = opts.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const baseDir = opts.baseDir ?? process.cwd();
  const byServer = new Map<string, readonly InjectedHeader[]>();
  for (const [server, cfg] of Object.entries(servers)) {
    if (cfg.headers === undefined) continue;
    const headers: InjectedHeader[] = [];
    for (const [name, raw] of Object.entries(cfg.headers)) {
      const where = `servers.${server}.headers.${name}`;
      const value = raw.startsWith(FILE_PREFIX) ? await readSecretFile(raw.slice(FILE_PREFIX.length), baseDir, read, where) : raw;
      if (value === '') throw new UpstreamCredentialError(`${where}: value is empty`);
      if (/[\r\n\0]/.test(value)) throw new UpstreamCredentialError(`${where}: value must be a single line`);
      headers.push(Object.freeze({ key: name.toLowerCase(), value }));
    }
    byServer.set(server, Object.freeze(headers));
  }
  return new UpstreamCredentials(byServer);
}

async function readSecretFile(
  path: string,
  baseDir: string,
  read: (path: string) => Promise<string>,
  where: string,
): Promise<string> {
  if (path === '') throw new UpstreamCredentialError(`${where}: file: needs a path`);
  const full = isAbsolute(path) ? path : resolve(baseDir, path);
  try {
    return (await read(full)).trim();
  } catch (err) {
    // The path is configuration, not a secret; the error code helps the operator.
    throw new UpstreamCredentialError(`${where}: cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** Every header name whose value must never be logged: the always-secret ones plus the injected ones. */
export function secretHeaderNames(credentials?: UpstreamCredentials): ReadonlySet<string> {
  const names = new Set(ALWAYS_SECRET_HEADERS);
  if (credentials !== undefined) for (const n of credentials.headerNames) names.add(n);
  return names;
}

/** A copy of a header map fit for logs: secret values replaced, names kept. */
export function redactHeaders(
  headers: Iterable<readonly [string, string]> | Readonly<Record<string, string>>,
  secret: ReadonlySet<string>,
): Record<string, string> {
  const entries: Iterable<readonly [string, string]> =
    Symbol.iterator in headers ? (headers as Iterable<readonly [string, string]>) : Object.entries(headers);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) out[k] = secret.has(k.toLowerCase()) ? REDACTED : v;
  return out;
}

/** pino `redact.paths` covering the given header names under `headers` and one level down. */
export function pinoRedactPaths(names: Iterable<string>): string[] {
  const paths: string[] = [];
  for (const n of names) {
    const key = JSON.stringify(n.toLowerCase());
    paths.push(`headers[${key}]`, `*.headers[${key}]`, `*[${key}]`);
  }
  return paths;
}
