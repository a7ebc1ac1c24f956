import { GatewayError } from '../errors/gateway-error.js';
import { ApiKeyStore, extractCredential, type ApiKeyEntry } from './api-keys.js';
import type { JwksEvent } from './jwks.js';
import { JwtError, JwtIssuers, looksLikeJwt, type JwtFailureReason, type VerifiedToken } from './jwt.js';
import { MtlsIdentities, XFCC_HEADER, type CertificateIdentity, type MtlsFailureReason } from './mtls.js';
import { ProtectedResource, requestTarget, wwwAuthenticate, type ChallengeParams } from './resource-metadata.js';
import type { AuthConfig } from './schema.js';

/** How a caller proved who it is. */
export type AuthMethod = 'api_key' | 'jwt' | 'mtls' | 'anonymous';

/** Who is calling. Carries no secret, so it may be logged and stored with a session. */
export interface Identity {
  readonly method: AuthMethod;
  /** The client as `allowed_clients` and audit logs name it; null only for anonymous callers. */
  readonly clientId: string | null;
  /** The tenant the credential names (checked against `tenants` by the tenant directory). */
  readonly tenant: string | null;
  readonly groups: readonly string[];
  /** OAuth scopes of a JWT (empty for other methods). */
  readonly scopes: readonly string[];
  /** JWT issuer; null for other methods. */
  readonly issuer: string | null;
  /** When the credential stops being valid (epoch ms), or null if it doesn't expire. */
  readonly expiresAt: number | null;
  /**
   * Stable key a session is bound to: method, issuer, client and tenant, so neither another client
   * nor the same client under another tenant or issuer can use the session.
   */
  readonly subject: string;
}

/** The key an identity binds sessions with. */
export function subjectKey(method: AuthMethod, issuer: string | null, clientId: string | null, tenant: string | null): string {
  // JSON keeps the parts unambiguous whatever characters they contain.
  return JSON.stringify([method, issuer, clientId, tenant]);
}

/** The parts of a {@link subjectKey}; null for text that is not one. */
export function subjectParts(subject: string): { method: string; issuer: string | null; clientId: string | null; tenant: string | null } | null {
  let v: unknown;
  try {
    v = JSON.parse(subject);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 4 || typeof v[0] !== 'string') return null;
  const part = (x: unknown): string | null => (typeof x === 'string' ? x : null);
  return { method: v[0], issuer: part(v[1]), clientId: part(v[2]), tenant: part(v[3]) };
}

/** Whether the caller presented a credential that was verified. */
export function isAuthenticated(identity: Identity): boolean {
  return identity.method !== 'anonymous';
}

/**
 * Whether an identity may use a session bound to `boundSubject`. Sessions created before any
 * binding (null) are usable only by anonymous callers, so enabling auth cannot hand an old session
 * to a new principal.
 */
export function sessionBoundTo(boundSubject: string | null, identity: Identity): boolean {
  return boundSubject === null ? identity.method === 'anonymous' : boundSubject === identity.subject;
}

/** What an identity is made of, beside its method. */
export interface IdentityFields {
  readonly clientId: string | null;
  readonly tenant: string | null;
  readonly groups: readonly string[];
  readonly scopes?: readonly string[];
  readonly issuer?: string | null;
  readonly expiresAt?: number | null;
}

/** An identity (its session subject derived from the parts). */
export function identity(method: AuthMethod, fields: IdentityFields): Identity {
  const issuer = fields.issuer ?? null;
  return Object.freeze({
    method,
    clientId: fields.clientId,
    tenant: fields.tenant,
    groups: fields.groups,
    scopes: fields.scopes ?? [],
    issuer,
    expiresAt: fields.expiresAt ?? null,
    subject: subjectKey(method, issuer, fields.clientId, fields.tenant),
  });
}

/** Why authentication failed; for the audit log only. */
export type AuthFailureReason =
  | 'no_credentials'
  | 'unsupported_scheme'
  | 'malformed_credential'
  | 'ambiguous_credentials'
  | 'method_not_configured'
  | 'unknown_api_key'
  | 'unknown_credential'
  | JwtFailureReason
  | MtlsFailureReason;

/**
 * The cause attached to every authentication GatewayError, so the request path can write the audit
 * line (reason, method) without the client ever seeing it.
 */
export class AuthFailure extends Error {
  override readonly name = 'AuthFailure';

  constructor(
    readonly reason: AuthFailureReason,
    readonly method: Exclude<AuthMethod, 'anonymous'> | null,
  ) {
    super(`authentication failed: ${reason}`);
  }
}

/** The AuthFailure behind an authentication error, if that is what it is. */
export function authFailureOf(err: unknown): AuthFailure | null {
  return err instanceof GatewayError && err.cause instanceof AuthFailure ? err.cause : null;
}

/** Dependencies and hooks of an {@link Authenticator}. */
export interface AuthenticatorOptions {
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
  readonly onJwksEvent?: (event: JwksEvent) => void;
  /** Extra resource paths (e.g. `/servers/<name>/mcp`) whose suffixed metadata URLs are served. */
  readonly endpointPaths?: Iterable<string>;
}

const ANONYMOUS_NO_TENANT = identity('anonymous', { clientId: null, tenant: null, groups: Object.freeze([]) });

/**
 * Every configured authentication method behind one call. Build once per config.
 *
 * Order: an explicit credential (`Authorization: Bearer` or `X-API-Key`) decides when present;
 * a bad one is refused, never silently replaced by a weaker identity. A bearer value is first
 * looked up as an API key (one hash), then verified as a JWT if it has the shape. Without an
 * explicit credential the verified client certificate counts (when mTLS is configured), then
 * anonymous access (when allowed). With no `auth` section at all every caller is anonymous.
 */
export class Authenticator {
  /** Whether any method is configured (false: everyone is anonymous, as before auth existed). */
  readonly enabled: boolean;
  /** Protected-resource metadata and challenges; null when neither `auth.oauth` nor a JWT issuer is configured. */
  readonly resource: ProtectedResource | null;
  private readonly anonymous: Identity | null;

  constructor(
    private readonly apiKeys: ApiKeyStore | null,
    private readonly jwt: JwtIssuers | null,
    private readonly mtls: MtlsIdentities | null,
    opts: { enabled: boolean; anonymous: Identity | null; resource: ProtectedResource | null },
  ) {
    this.enabled = opts.enabled;
    this.anonymous = opts.anonymous;
    this.resource = opts.resource;
  }

  /** Builds the authenticator from `auth` (reads JWKS files; remote keys are fetched lazily or by warm()). */
  static async create(auth: AuthConfig | undefined, opts: AuthenticatorOptions = {}): Promise<Authenticator> {
    if (auth === undefined) {
      return new Authenticator(null, null, null, { enabled: false, anonymous: ANONYMOUS_NO_TENANT, resource: null });
    }
    // Without auth.oauth, the JWT issuers are the authorization servers of a resource derived
    // from each request; with neither, no token could be obtained, so no metadata is served.
    const source = auth.oauth ?? (auth.jwt.length === 0 ? null : { authorization_servers: auth.jwt.map((j) => j.issuer) });
    const resource = source === null ? null : new ProtectedResource(source, opts.endpointPaths);
    const apiKeys = auth.api_keys.length === 0 ? null : new ApiKeyStore(auth.api_keys);
    const jwt =
      auth.jwt.length === 0
        ? null
        : await JwtIssuers.create(auth.jwt, {
            defaultAudience: auth.oauth?.resource,
            ...(opts.now === undefined ? {} : { now: opts.now }),
            ...(opts.fetch === undefined ? {} : { fetch: opts.fetch }),
            ...(opts.onJwksEvent === undefined ? {} : { onJwksEvent: opts.onJwksEvent }),
          });
    const mtls = auth.mtls === undefined ? null : new MtlsIdentities(auth.mtls);
    const anonymous = auth.allow_anonymous
      ? identity('anonymous', { clientId: null, tenant: auth.anonymous_tenant ?? null, groups: Object.freeze([]) })
      : null;
    return new Authenticator(apiKeys, jwt, mtls, { enabled: true, anonymous, resource });
  }

  /** Fetches remote JWKS ahead of traffic; failures are reported through onJwksEvent, not thrown. */
  async warm(): Promise<void> {
    await this.jwt?.warm();
  }

  /**
   * The caller's identity from lower-case request headers. Anonymous callers get an identity with
   * method `anonymous` when anonymous access is allowed (or auth is not configured).
   *
   * @throws GatewayError 401 `GW_ERR_AUTH_UNAUTHENTICATED` with `WWW-Authenticate` for missing or
   *   bad credentials (`error="invalid_token"` when a credential was presented), or 400
   *   `GW_ERR_INVALID_REQUEST` for a malformed or doubled credential. The cause is an AuthFailure.
   */
  async authenticate(headers: ReadonlyMap<string, string>): Promise<Identity> {
    if (!this.enabled) return ANONYMOUS_NO_TENANT;
    const cred = extractCredential(headers);
    switch (cred.kind) {
      case 'bearer':
        return this.bearer(cred.token, headers);
      case 'api_key': {
        if (this.apiKeys === null) throw this.invalidToken('method_not_configured', 'api_key', headers);
        const entry = this.apiKeys.lookup(cred.token);
        if (entry === null) throw this.invalidToken('unknown_api_key', 'api_key', headers);
        return fromApiKey(entry);
      }
      case 'malformed':
        if (cred.reason === 'unsupported_scheme') throw this.challenge(new AuthFailure('unsupported_scheme', null), {}, headers);
        throw this.badRequest(cred.reason, headers);
      case 'none':
        break;
    }
    if (this.mtls !== null) {
      const xfcc = headers.get(XFCC_HEADER);
      if (xfcc !== undefined) {
        const r = this.mtls.identify(xfcc);
        if (!r.ok) throw this.challenge(new AuthFailure(r.reason, 'mtls'), {}, headers);
        return fromCertificate(r.identity);
      }
    }
    if (this.anonymous !== null) return this.anonymous;
    throw this.challenge(new AuthFailure('no_credentials', null), {}, headers);
  }

  /**
   * A 401 asking the caller to authenticate: what the request path throws when an anonymous caller asks
   * for something that needs an identity (an `auth_required` server, a tenant-only endpoint).
   * `headers` are the request's: where it went names the metadata of a derived resource.
   */
  challenge(
    failure: AuthFailure = new AuthFailure('no_credentials', null),
    params: Omit<ChallengeParams, 'resourceMetadata'> = {},
    headers: ReadonlyMap<string, string> | null = null,
  ): GatewayError {
    const value = this.resource === null ? wwwAuthenticate(params) : this.resource.challenge(params, headers === null ? null : requestTarget(headers));
    return new GatewayError('GW_ERR_AUTH_UNAUTHENTICATED', undefined, { headers: { 'www-authenticate': value }, cause: failure });
  }

  /** The identity a JWT of a configured issuer names; null when it is not such a token or does not verify. */
  async jwtIdentity(token: string): Promise<Identity | null> {
    if (this.jwt === null || !looksLikeJwt(token)) return null;
    try {
      return fromToken(await this.jwt.verify(token));
    } catch {
      return null;
    }
  }

  private async bearer(token: string, headers: ReadonlyMap<string, string>): Promise<Identity> {
    if (this.apiKeys !== null) {
      const entry = this.apiKeys.lookup(token);
      if (entry !== null) return fromApiKey(entry);
    }
    if (this.jwt !== null && looksLikeJwt(token)) {
      let verified: VerifiedToken;
      try {
        verified = await this.jwt.verify(token);
      } catch (err) {
        const reason = err instanceof JwtError ? err.reason : 'invalid';
        throw this.invalidToken(reason, 'jwt', headers);
      }
      return fromToken(verified);
    }
    throw this.invalidToken(this.apiKeys === null ? 'unknown_credential' : 'unknown_api_key', this.apiKeys === null ? null : 'api_key', headers);
  }

  private invalidToken(reason: AuthFailureReason, method: Exclude<AuthMethod, 'anonymous'> | null, headers: ReadonlyMap<string, string>): GatewayError {
    const description = reason === 'expired' ? 'The access token expired' : 'The access token is invalid';
    return this.challenge(new AuthFailure(reason, method), { error: 'invalid_token', description }, headers);
  }

  private badRequest(reason: AuthFailureReason, headers: ReadonlyMap<string, string>): GatewayError {
    const params = { error: 'invalid_request' } as const;
    const challenge = this.resource === null ? wwwAuthenticate(params) : this.resource.challenge(params, requestTarget(headers));
    const message =
      reason === 'ambiguous_credentials'
        ? 'Bad Request: send either Authorization or X-API-Key, not both'
        : 'Bad Request: malformed credential';
    return new GatewayError('GW_ERR_INVALID_REQUEST', message, {
      headers: { 'www-authenticate': challenge },
      cause: new AuthFailure(reason, null),
    });
  }
}

// Keys and cached tokens come back as the same objects, so their identities are built once.
const keyIdentities = new WeakMap<ApiKeyEntry, Identity>();
const tokenIdentities = new WeakMap<VerifiedToken, Identity>();

function fromApiKey(entry: ApiKeyEntry): Identity {
  let id = keyIdentities.get(entry);
  if (id === undefined) {
    id = identity('api_key', { clientId: entry.id, tenant: entry.tenant, groups: entry.groups });
    keyIdentities.set(entry, id);
  }
  return id;
}

function fromToken(t: VerifiedToken): Identity {
  let id = tokenIdentities.get(t);
  if (id === undefined) {
    id = identity('jwt', {
      clientId: t.clientId,
      tenant: t.tenant,
      groups: t.groups,
      scopes: t.scopes,
      issuer: t.issuer,
      expiresAt: t.expiresAt,
    });
    tokenIdentities.set(t, id);
  }
  return id;
}

function fromCertificate(c: CertificateIdentity): Identity {
  return identity('mtls', { clientId: c.clientId, tenant: c.tenant, groups: c.groups });
}
