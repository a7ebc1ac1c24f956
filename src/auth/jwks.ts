import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

/**
 * Where a JWT issuer's public keys come from: a fixed set (inline or file) or the issuer's
 * `jwks_uri`, fetched by a cache of our own so fetching is bounded however the traffic behaves.
 */
export interface KeySource {
  /** Resolves the verification key for a token's protected header (jose's key-resolver shape). */
  readonly getKey: JWTVerifyGetKey;
  /** Changes whenever the set of keys changes, so caches of verified tokens can be dropped. */
  readonly generation: number;
}

/** The keys could not be obtained (fetch failed, or refused while failing fetches cool down). */
export class JwksUnavailableError extends Error {
  override readonly name = 'JwksUnavailableError';
}

// Members that only private or symmetric keys carry: a JWKS holding them is a leaked secret.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/** Why a JWK is not acceptable as a verification key, or null. */
function unacceptableKey(jwk: Readonly<Record<string, unknown>>): string | null {
  if (typeof jwk['kty'] !== 'string') return 'missing kty';
  if (jwk['kty'] === 'oct') return 'symmetric (oct) keys are not accepted';
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(jwk, m))) return 'contains private key material';
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return `use "${String(jwk['use'])}" is not "sig"`;
  return null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates a configured JWKS: an object with a non-empty `keys` array of public signature keys.
 * Throws with a message naming the offending key; used at config load, where failing is right.
 */
export function validateJwks(doc: unknown, origin: string): JSONWebKeySet {
  if (!isRecord(doc) || !Array.isArray(doc['keys']) || doc['keys'].length === 0) {
    throw new Error(`${origin}: expected a JWKS document {"keys": [...]} with at least one key`);
  }
  doc['keys'].forEach((k: unknown, i: number) => {
    if (!isRecord(k)) throw new Error(`${origin}: keys[${i}] is not an object`);
    const why = unacceptableKey(k);
    if (why !== null) throw new Error(`${origin}: keys[${i}] ${why}`);
  });
  return doc as unknown as JSONWebKeySet;
}

/**
 * Keeps the acceptable keys of a fetched JWKS. A remote set is not ours to fail on: an issuer that
 * publishes one odd key alongside good ones should not lock every client out.
 */
function usableRemoteKeys(doc: unknown): { set: JSONWebKeySet; dropped: number } {
  if (!isRecord(doc) || !Array.isArray(doc['keys'])) throw new Error('response is not a JWKS document');
  const keys = (doc['keys'] as unknown[]).filter((k): k is Record<string, unknown> => isRecord(k) && unacceptableKey(k) === null);
  return { set: { keys } as unknown as JSONWebKeySet, dropped: (doc['keys'] as unknown[]).length - keys.length };
}

/** A key set fixed at load (inline `jwks` or `jwks_file`). */
export class StaticKeySet implements KeySource {
  readonly generation = 0;
  readonly getKey: JWTVerifyGetKey;

  constructor(jwks: JSONWebKeySet) {
    this.getKey = createLocalJWKSet(jwks);
  }

  /** From an inline JWKS document. */
  static fromDocument(doc: unknown, origin = 'jwks'): StaticKeySet {
    return new StaticKeySet(validateJwks(doc, origin));
  }

  /** From a JWKS file, read once. */
  static async fromFile(path: string): Promise<StaticKeySet> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new Error(`jwks_file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new Error(`jwks_file ${path}: not valid JSON`);
    }
    return StaticKeySet.fromDocument(doc, `jwks_file ${path}`);
  }
}

/** Something a remote key set did, for the operator's log. */
export type JwksEvent =
  | { readonly type: 'jwks_fetched'; readonly url: string; readonly keys: number; readonly dropped: number; readonly ms: number }
  | { readonly type: 'jwks_fetch_failed'; readonly url: string; readonly error: string }
  | { readonly type: 'jwks_refresh_suppressed'; readonly url: string };

/** Tuning of a {@link RemoteKeySet}. */
export interface RemoteKeySetOptions {
  readonly url: string;
  /** Timeout of one fetch, body included. */
  readonly timeoutMs: number;
  /** Shortest interval between two fetch attempts, whatever triggers them. */
  readonly cooldownMs: number;
  /** Age after which keys are refreshed in the background (still served meanwhile). */
  readonly maxAgeMs: number;
  /** Largest JWKS body accepted. */
  readonly maxBytes?: number;
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
  readonly onEvent?: (event: JwksEvent) => void;
}

const DEFAULT_MAX_BYTES = 512 * 1024;

/**
 * The keys at an issuer's `jwks_uri`.
 *
 * Requests never wait on the network except for the very first key lookup and for a `kid` the
 * cached set doesn't know; the latter refreshes at most once per cooldown, concurrent lookups share
 * one fetch, and a flood of made-up `kid`s therefore costs the issuer one request per cooldown.
 * Keys older than maxAge are refreshed in the background while the old ones keep serving.
 */
export class RemoteKeySet implements KeySource {
  private keys: JWTVerifyGetKey | null = null;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private lastAttempt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | null = null;
  private gen = 0;
  private readonly now: () => number;
  private readonly fetchImpl: typeof fetch;
  readonly getKey: JWTVerifyGetKey;

  constructor(private readonly opts: RemoteKeySetOptions) {
    this.now = opts.now ?? Date.now;
    this.fetchImpl = opts.fetch ?? fetch;
    this.getKey = (header, token) => this.resolve(header, token);
  }

  get generation(): number {
    return this.gen;
  }

  /** Fetches the keys ahead of the first request; failures are reported, not thrown. */
  async warm(): Promise<void> {
    await this.refresh().catch(() => {});
  }

  private async resolve(...args: Parameters<JWTVerifyGetKey>): Promise<Awaited<ReturnType<JWTVerifyGetKey>>> {
    const now = this.now();
    if (this.keys === null) {
      if (this.inflight === null && now - this.lastAttempt < this.opts.cooldownMs) {
        throw new JwksUnavailableError(`keys from ${this.opts.url} are unavailable`);
      }
      await this.refresh();
    } else if (now - this.fetchedAt >= this.opts.maxAgeMs && now - this.lastAttempt >= this.opts.cooldownMs) {
      void this.refresh().catch(() => {});
    }
    const keys = this.keys as JWTVerifyGetKey | null;
    if (keys === null) throw new JwksUnavailableError(`keys from ${this.opts.url} are unavailable`);
    try {
      return await keys(...args);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      if (this.inflight !== null) {
        await this.inflight.catch(() => {});
      } else if (this.now() - this.lastAttempt >= this.opts.cooldownMs) {
        await this.refresh().catch(() => {});
      } else {
        this.opts.onEvent?.({ type: 'jwks_refresh_suppressed', url: this.opts.url });
        throw err;
      }
      const fresh = this.keys as JWTVerifyGetKey | null;
      if (fresh === null || fresh === keys) throw err;
      return fresh(...args);
    }
  }

  /** One fetch at a time; everyone who asks meanwhile shares it. */
  private refresh(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    const p = this.fetchOnce().finally(() => {
      this.inflight = null;
    });
    this.inflight = p;
    return p;
  }

  private async fetchOnce(): Promise<void> {
    // Set before the first await so concurrent callers see the attempt at once.
    this.lastAttempt = this.now();
    const started = performance.now();
    const url = this.opts.url;
    try {
      const res = await this.fetchImpl(url, {
        headers: { accept: 'application/jwk-set+json, application/json' },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`HTTP ${res.status}`);
      }
      const text = await readLimited(res, this.opts.maxBytes ?? DEFAULT_MAX_BYTES);
      const { set, dropped } = usableRemoteKeys(JSON.parse(text));
      this.keys = createLocalJWKSet(set);
      this.fetchedAt = this.now();
      this.gen += 1;
      this.opts.onEvent?.({ type: 'jwks_fetched', url, keys: set.keys.length, dropped, ms: Math.round(performance.now() - started) });
    } catch (err) {
      const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.opts.onEvent?.({ type: 'jwks_fetch_failed', url, error });
      throw new JwksUnavailableError(`fetching ${url} failed: ${error}`, { cause: err });
    }
  }
}

async function readLimited(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`JWKS larger than ${maxBytes} bytes`);
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new Error(`JWKS larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
