import type { IncomingHttpHeaders } from 'node:http';
import { ApiKeyStore, isWellFormedCredential } from '../auth/api-keys.js';
import type { Authenticator } from '../auth/identity.js';
import type { AdminConfig } from '../config/schema.js';

/**
 * Who may open the console: a holder of an admin key (never a client's key), or the bearer of a
 * token of one of the trusted JWT issuers (`admin.jwt_issuers`) naming one of the admin groups.
 * Everything else is refused.
 */

/** An operator the console let in (logged with every change made through it). */
export interface AdminPrincipal {
  readonly id: string;
  readonly method: 'admin_key' | 'jwt';
}

/** The header the JSON API accepts an admin key in (besides Basic and Bearer). */
export const ADMIN_KEY_HEADER = 'x-admin-key';

/** What a browser is asked for when no credential came (HTTP Basic: any user, the key as password). */
export const ADMIN_CHALLENGE = 'Basic realm="mcp-gateway admin", charset="UTF-8"';

export class AdminAuth {
  private readonly keys: ApiKeyStore;
  private readonly groups: ReadonlySet<string>;
  private readonly issuers: ReadonlySet<string>;

  constructor(
    admin: AdminConfig,
    /** The client listener's authenticator: only its JWT issuers are consulted. */
    private readonly auth: Authenticator,
  ) {
    this.keys = new ApiKeyStore(admin.api_keys.map((k) => ({ id: k.id, key_sha256: k.key_sha256, groups: [] })));
    this.groups = new Set(admin.jwt_groups);
    this.issuers = new Set(admin.jwt_issuers);
  }

  /** The operator the request's credential names, or null (no credential, or one that does not open the console). */
  async check(headers: IncomingHttpHeaders): Promise<AdminPrincipal | null> {
    const given = presented(headers);
    if (given === null) return null;
    if (given.kind === 'bearer' && this.groups.size > 0) {
      const who = await this.auth.jwtIdentity(given.value);
      // A token only of a trusted issuer, naming an admin group: another issuer's groups mean nothing here.
      if (who !== null) return who.issuer !== null && this.issuers.has(who.issuer) && who.groups.some((g) => this.groups.has(g)) ? { id: who.clientId ?? who.subject, method: 'jwt' } : null;
    }
    const key = this.keys.lookup(given.value);
    return key === null ? null : { id: key.id, method: 'admin_key' };
  }
}

/** The one credential a request carries: a Basic password, a Bearer token or an X-Admin-Key. */
function presented(headers: IncomingHttpHeaders): { readonly kind: 'basic' | 'bearer' | 'key'; readonly value: string } | null {
  const header = headers[ADMIN_KEY_HEADER];
  const authorization = headers.authorization;
  if (typeof header === 'string' && authorization === undefined) return isWellFormedCredential(header) ? { kind: 'key', value: header } : null;
  if (authorization === undefined || header !== undefined) return null;
  const space = authorization.indexOf(' ');
  if (space < 0) return null;
  const scheme = authorization.slice(0, space).toLowerCase();
  const value = authorization.slice(space + 1).trim();
  if (scheme === 'bearer') return isWellFormedCredential(value) ? { kind: 'bearer', value } : null;
  if (scheme !== 'basic') return null;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const password = colon < 0 ? '' : decoded.slice(colon + 1);
  return isWellFormedCredential(password) ? { kind: 'basic', value: password } : null;
}

/**
 * Whether a state-changing request comes from the console's own pages (or from a client that is
 * no browser): a browser sends Basic credentials to any page that asks, so a form on another
 * site must not be able to end sessions or apply a config.
 */
export function sameOrigin(headers: IncomingHttpHeaders): boolean {
  const site = headers['sec-fetch-site'];
  if (typeof site === 'string') return site === 'same-origin' || site === 'none';
  const origin = headers.origin;
  if (origin === undefined) return true;
  return origin === `http://${headers.host ?? ''}` || origin === `https://${headers.host ?? ''}`;
}
