import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiKeyConfig } from './schema.js';

/** Header carrying an API key when `Authorization` is not used. */
export const API_KEY_HEADER = 'x-api-key';

/** Longest credential considered (JWTs with many claims run to a few KiB). */
export const MAX_CREDENTIAL_LENGTH = 16 * 1024;

/**
 * Shortest key `hash-key` accepts. Keys are stored as unsalted SHA-256, which is only safe for
 * high-entropy keys; short ones could be brute-forced from a leaked config.
 */
export const MIN_API_KEY_LENGTH = 16;

// Visible ASCII without ',' (a comma means Envoy joined two header lines into one value).
const CREDENTIAL = /^[\x21-\x2b\x2d-\x7e]+$/;
const BEARER = /^bearer +([^ ]+) *$/i;

/** SHA-256 of a key (UTF-8) in lower-case hex: the form stored in `auth.api_keys[].key_sha256`. */
export function sha256Hex(key: string): string {
  return hash('sha256', key, 'hex');
}

/** Whether a string can be presented as a credential at all (visible ASCII, no comma, bounded). */
export function isWellFormedCredential(value: string): boolean {
  return value.length > 0 && value.length <= MAX_CREDENTIAL_LENGTH && CREDENTIAL.test(value);
}

/** A credential found in the request headers. */
export type PresentedCredential =
  | { readonly kind: 'none' }
  | { readonly kind: 'bearer'; readonly token: string }
  | { readonly kind: 'api_key'; readonly token: string }
  /** Something was presented but cannot be used; `reason` is for the audit log, not the client. */
  | { readonly kind: 'malformed'; readonly reason: 'unsupported_scheme' | 'malformed_credential' | 'ambiguous_credentials' };

const NONE: PresentedCredential = Object.freeze({ kind: 'none' });

/**
 * Finds the credential in `authorization: Bearer <token>` or `x-api-key: <key>` (lower-case header
 * names, as Envoy sends them). Both at once is refused rather than guessing which one counts.
 */
export function extractCredential(headers: ReadonlyMap<string, string>): PresentedCredential {
  const authorization = headers.get('authorization');
  const apiKey = headers.get(API_KEY_HEADER);
  if (authorization !== undefined && apiKey !== undefined) return { kind: 'malformed', reason: 'ambiguous_credentials' };
  if (authorization !== undefined) {
    const m = BEARER.exec(authorization.trim());
    if (m === null) {
      return /^bearer\b/i.test(authorization.trim())
        ? { kind: 'malformed', reason: 'malformed_credential' }
        : { kind: 'malformed', reason: 'unsupported_scheme' };
    }
    const token = m[1]!;
    return isWellFormedCredential(token) ? { kind: 'bearer', token } : { kind: 'malformed', reason: 'malformed_credential' };
  }
  if (apiKey !== undefined) {
    const token = apiKey.trim();
    return isWellFormedCredential(token) ? { kind: 'api_key', token } : { kind: 'malformed', reason: 'malformed_credential' };
  }
  return NONE;
}

/** What a matched API key stands for. */
export interface ApiKeyEntry {
  readonly id: string;
  readonly tenant: string | null;
  readonly groups: readonly string[];
}

interface Indexed {
  readonly digest: Buffer;
  readonly entry: ApiKeyEntry;
}

/**
 * The configured API keys, built once per config.
 *
 * Lookup is O(1) and constant-time with respect to the stored keys: the presented key is hashed,
 * the hash is bucketed by a tag keyed with a random per-process secret (so the Map lookup's timing
 * says nothing an attacker can relate to any stored hash), and the one candidate is confirmed with
 * `timingSafeEqual` over fixed-length digests. A miss compares against a decoy, so hit and miss do
 * the same work and nothing depends on a key's position in the list.
 */
export class ApiKeyStore {
  private readonly indexKey = randomBytes(32);
  private readonly decoy = randomBytes(32);
  private readonly index = new Map<string, Indexed>();

  constructor(keys: readonly ApiKeyConfig[]) {
    for (const k of keys) {
      const digest = Buffer.from(k.key_sha256.toLowerCase(), 'hex');
      const entry: ApiKeyEntry = Object.freeze({ id: k.id, tenant: k.tenant ?? null, groups: Object.freeze([...k.groups]) });
      this.index.set(this.tag(digest), { digest, entry });
    }
  }

  /** Number of configured keys. */
  get size(): number {
    return this.index.size;
  }

  /** The entry for a presented key, or null. */
  lookup(presented: string): ApiKeyEntry | null {
    const digest = hash('sha256', presented, 'buffer');
    const candidate = this.index.get(this.tag(digest));
    const same = timingSafeEqual(candidate?.digest ?? this.decoy, digest);
    return same && candidate !== undefined ? candidate.entry : null;
  }

  private tag(digest: Buffer): string {
    // SHA-256(secret ‖ digest) over fixed-length input: an unpredictable bucket name at a tenth of
    // an HMAC object's setup cost. It only picks the bucket; timingSafeEqual decides.
    return hash('sha256', Buffer.concat([this.indexKey, digest]), 'base64');
  }
}
