import { decodeJwt, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { durationMs } from '../lib/duration.js';
import { JwksUnavailableError, RemoteKeySet, StaticKeySet, type JwksEvent, type KeySource } from './jwks.js';
import type { JwtIssuerConfig } from './schema.js';

/** Why a token was refused; for the audit log (clients only learn "invalid" or "expired"). */
export type JwtFailureReason =
  | 'malformed'
  | 'unknown_issuer'
  | 'alg_not_allowed'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'missing_claim'
  | 'bad_claim'
  | 'ambiguous_tenant'
  | 'keys_unavailable'
  | 'invalid';

/** A token that did not verify. The message is safe for logs (it never contains the token). */
export class JwtError extends Error {
  override readonly name = 'JwtError';

  constructor(
    readonly reason: JwtFailureReason,
    message: string = reason,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/** What a verified token says about its bearer, after claim mapping. */
export interface VerifiedToken {
  readonly issuer: string;
  readonly clientId: string;
  readonly tenant: string | null;
  readonly groups: readonly string[];
  readonly scopes: readonly string[];
  /** `exp` in epoch milliseconds. */
  readonly expiresAt: number;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Whether a bearer credential is shaped like a compact JWS (so it is verified, not looked up). */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

/**
 * A claim by name or dotted path. The literal name wins, so namespaced claims that contain dots
 * (`https://example.com/tenant`) work; otherwise `realm_access.roles` walks nested objects.
 */
export function claimAt(payload: Readonly<Record<string, unknown>>, path: string): unknown {
  if (Object.hasOwn(payload, path)) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

// Claim values end up in audit logs and session keys: no control or format characters.
const SAFE_TEXT = /^[^\p{Cc}\p{Cf}]{1,256}$/u;

function safeString(v: unknown): string | null {
  return typeof v === 'string' && SAFE_TEXT.test(v) ? v : null;
}

function stringList(v: unknown): string[] {
  const raw = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : [];
  const out: string[] = [];
  for (const item of raw) {
    const s = safeString(item);
    if (s !== null && out.length < 256) out.push(s);
  }
  return out;
}

/** Options shared by the verifiers of one gateway. */
export interface JwtVerifierOptions {
  /** Audience used when the issuer config lists none: the gateway's own resource URI. */
  readonly defaultAudience?: string | undefined;
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
  readonly onJwksEvent?: (event: JwksEvent) => void;
  /** Verified tokens remembered (so a client's repeated token costs no signature check). */
  readonly cacheSize?: number;
}

interface CachedToken {
  readonly verified: VerifiedToken;
  readonly notBefore: number;
  readonly generation: number;
}

const DEFAULT_CACHE_SIZE = 1024;
// More candidate keys than this for a token without `kid` is not worth trying one by one.
const MAX_CANDIDATE_KEYS = 8;

/**
 * Verifies access tokens from one issuer.
 *
 * Refuses `alg: none` and every algorithm outside the allow-list before a key is even looked up;
 * HS* is not offered at all (a shared secret would let anyone holding it mint tokens, and
 * excluding symmetric algorithms removes RS/HS confusion by construction: the key sets also refuse
 * `oct` keys). Requires `exp`, checks `iss` exactly, `aud` against the configured audiences (by
 * default the gateway's resource URI), and exp/nbf/iat with the configured clock skew.
 */
export class JwtVerifier {
  readonly issuer: string;
  private readonly audiences: readonly string[];
  private readonly options: JWTVerifyOptions;
  private readonly skewMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, CachedToken>();
  private readonly cacheSize: number;

  constructor(
    private readonly cfg: JwtIssuerConfig,
    readonly keys: KeySource,
    opts: JwtVerifierOptions = {},
  ) {
    const audiences = cfg.audiences ?? (opts.defaultAudience === undefined ? [] : [opts.defaultAudience]);
    if (audiences.length === 0) throw new Error(`jwt issuer ${cfg.issuer}: no audience configured`);
    this.issuer = cfg.issuer;
    this.audiences = audiences;
    this.skewMs = durationMs(cfg.clock_skew);
    this.now = opts.now ?? Date.now;
    this.cacheSize = opts.cacheSize ?? DEFAULT_CACHE_SIZE;
    this.options = {
      issuer: cfg.issuer,
      audience: [...audiences],
      algorithms: [...cfg.algorithms],
      clockTolerance: Math.floor(this.skewMs / 1000),
      requiredClaims: ['exp'],
    };
  }

  /** Builds the verifier with its key source (reads `jwks_file`; `jwks_uri` is fetched lazily). */
  static async create(cfg: JwtIssuerConfig, opts: JwtVerifierOptions = {}): Promise<JwtVerifier> {
    let keys: KeySource;
    if (cfg.jwks_uri !== undefined) {
      keys = new RemoteKeySet({
        url: cfg.jwks_uri,
        timeoutMs: durationMs(cfg.jwks_timeout),
        cooldownMs: durationMs(cfg.jwks_refresh_cooldown),
        maxAgeMs: durationMs(cfg.jwks_cache_ttl),
        ...(opts.now === undefined ? {} : { now: opts.now }),
        ...(opts.fetch === undefined ? {} : { fetch: opts.fetch }),
        ...(opts.onJwksEvent === undefined ? {} : { onEvent: opts.onJwksEvent }),
      });
    } else if (cfg.jwks_file !== undefined) {
      keys = await StaticKeySet.fromFile(cfg.jwks_file);
    } else if (cfg.jwks !== undefined) {
      keys = StaticKeySet.fromDocument(cfg.jwks, `jwt issuer ${cfg.issuer}: jwks`);
    } else {
      throw new Error(`jwt issuer ${cfg.issuer}: no key source`);
    }
    return new JwtVerifier(cfg, keys, opts);
  }

  /** Verifies a compact JWS and maps its claims; throws {@link JwtError}. */
  async verify(token: string): Promise<VerifiedToken> {
    const now = this.now();
    const hit = this.cache.get(token);
    if (hit !== undefined) {
      if (hit.generation === this.keys.generation && now < hit.verified.expiresAt + this.skewMs && now >= hit.notBefore - this.skewMs) {
        return hit.verified;
      }
      this.cache.delete(token);
    }
    let payload: JWTPayload;
    try {
      payload = await this.verifySignatureAndClaims(token, now);
    } catch (err) {
      throw toJwtError(err);
    }
    const verified = this.mapClaims(payload);
    this.remember(token, verified, payload);
    return verified;
  }

  private async verifySignatureAndClaims(token: string, now: number): Promise<JWTPayload> {
    const options: JWTVerifyOptions = { ...this.options, currentDate: new Date(now) };
    try {
      return (await jwtVerify(token, this.keys.getKey, options)).payload;
    } catch (err) {
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      // No `kid` and several keys fit the algorithm: try each, bounded.
      let tried = 0;
      for await (const key of err as unknown as AsyncIterable<Awaited<ReturnType<JWTVerifyGetKey>>>) {
        if (++tried > MAX_CANDIDATE_KEYS) break;
        try {
          return (await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], options)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }

  private mapClaims(payload: JWTPayload): VerifiedToken {
    const claims = payload as Record<string, unknown>;
    const clientId = safeString(claimAt(claims, this.cfg.client_claim));
    if (clientId === null) throw new JwtError('missing_claim', `claim ${this.cfg.client_claim} is missing or not a string`);

    let tenant: string | null = this.cfg.tenant ?? null;
    if (this.cfg.tenant_claim !== undefined) {
      const raw = claimAt(claims, this.cfg.tenant_claim);
      const single = Array.isArray(raw) && raw.length === 1 ? raw[0] : raw;
      if (Array.isArray(single)) throw new JwtError('ambiguous_tenant', `claim ${this.cfg.tenant_claim} names several tenants`);
      if (single !== undefined) {
        const t = safeString(single);
        if (t === null) throw new JwtError('bad_claim', `claim ${this.cfg.tenant_claim} is not a tenant name`);
        tenant = t;
      }
    }
    const groups = this.cfg.groups_claim === undefined ? [] : stringList(claimAt(claims, this.cfg.groups_claim));
    const scopes = stringList(claims['scope'] ?? claims['scp']);
    return Object.freeze({
      issuer: this.issuer,
      clientId,
      tenant,
      groups: Object.freeze(groups),
      scopes: Object.freeze(scopes),
      expiresAt: (payload.exp ?? 0) * 1000,
    });
  }

  private remember(token: string, verified: VerifiedToken, payload: JWTPayload): void {
    if (this.cacheSize <= 0) return;
    if (this.cache.size >= this.cacheSize) {
      // Oldest insertion first: Map iteration order.
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    const notBefore = payload.nbf === undefined ? Number.NEGATIVE_INFINITY : payload.nbf * 1000;
    this.cache.set(token, { verified, notBefore, generation: this.keys.generation });
  }

  /** Accepted audiences (for diagnostics). */
  get acceptedAudiences(): readonly string[] {
    return this.audiences;
  }
}

/**
 * All configured issuers, dispatched by the token's (unverified) `iss`; the chosen verifier then
 * checks `iss` again as part of verification, so the unverified read only picks which keys to use.
 */
export class JwtIssuers {
  private readonly byIssuer: ReadonlyMap<string, JwtVerifier>;

  constructor(verifiers: readonly JwtVerifier[]) {
    this.byIssuer = new Map(verifiers.map((v) => [v.issuer, v]));
  }

  /** Builds every issuer's verifier. */
  static async create(configs: readonly JwtIssuerConfig[], opts: JwtVerifierOptions = {}): Promise<JwtIssuers> {
    return new JwtIssuers(await Promise.all(configs.map((c) => JwtVerifier.create(c, opts))));
  }

  get size(): number {
    return this.byIssuer.size;
  }

  /** The verifier for an issuer, if configured. */
  get(issuer: string): JwtVerifier | undefined {
    return this.byIssuer.get(issuer);
  }

  /** Fetches every remote key set once, ahead of traffic (failures are reported via onJwksEvent). */
  async warm(): Promise<void> {
    await Promise.all([...this.byIssuer.values()].map((v) => (v.keys instanceof RemoteKeySet ? v.keys.warm() : undefined)));
  }

  /** Verifies a token with its issuer's verifier; throws {@link JwtError}. */
  async verify(token: string): Promise<VerifiedToken> {
    let verifier: JwtVerifier | undefined;
    if (this.byIssuer.size === 1) {
      verifier = this.byIssuer.values().next().value;
    } else {
      let iss: unknown;
      try {
        iss = decodeJwt(token).iss;
      } catch (err) {
        throw new JwtError('malformed', 'token is not a JWT', { cause: err });
      }
      verifier = typeof iss === 'string' ? this.byIssuer.get(iss) : undefined;
      if (verifier === undefined) throw new JwtError('unknown_issuer', 'token issuer is not configured');
    }
    if (verifier === undefined) throw new JwtError('unknown_issuer', 'no issuer configured');
    return verifier.verify(token);
  }
}

function toJwtError(err: unknown): JwtError {
  if (err instanceof JwtError) return err;
  if (err instanceof JwksUnavailableError) return new JwtError('keys_unavailable', err.message, { cause: err });
  if (err instanceof errors.JWTExpired) return new JwtError('expired', 'token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    const reason: JwtFailureReason =
      err.reason === 'missing'
        ? 'missing_claim'
        : err.claim === 'iss'
          ? 'wrong_issuer'
          : err.claim === 'aud'
            ? 'wrong_audience'
            : err.claim === 'nbf'
              ? 'not_yet_valid'
              : 'bad_claim';
    return new JwtError(reason, `claim ${err.claim}: ${err.reason}`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new JwtError('alg_not_allowed', 'algorithm not allowed');
  if (err instanceof errors.JWKSNoMatchingKey) return new JwtError('unknown_key', 'no key matches the token');
  if (err instanceof errors.JWSSignatureVerificationFailed) return new JwtError('bad_signature', 'signature verification failed');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return new JwtError('malformed', 'token is malformed');
  }
  return new JwtError('invalid', 'token could not be verified', { cause: err });
}
