import { pathOf } from '../lib/url.js';
import type { OAuthResourceConfig } from './schema.js';

/** RFC 9728's well-known path prefix. */
export const RESOURCE_METADATA_PATH = '/.well-known/oauth-protected-resource';

/** The RFC 9728 protected-resource metadata document the gateway serves. */
export interface ProtectedResourceMetadata {
  readonly resource: string;
  readonly authorization_servers: readonly string[];
  readonly bearer_methods_supported: readonly ['header'];
  readonly scopes_supported?: readonly string[];
  readonly resource_name?: string;
  readonly resource_documentation?: string;
}

/**
 * Where the gateway's resource metadata comes from: `auth.oauth` (one fixed resource), or, without
 * it, the JWT issuers alone (the resource is then the URL each client used).
 */
export type ResourceSource = OAuthResourceConfig | { readonly authorization_servers: readonly string[] };

/** Where a request was sent, as the client named it (scheme and authority), and to which path. */
export interface RequestTarget {
  /** `https://mcp.example.com`; null when the request did not say (no usable Host). */
  readonly origin: string | null;
  readonly path: string;
}

/** Builds the metadata document from `auth.oauth`. */
export function buildResourceMetadata(oauth: OAuthResourceConfig): ProtectedResourceMetadata {
  return {
    resource: oauth.resource,
    authorization_servers: [...oauth.authorization_servers],
    // Tokens in query strings or bodies leak into logs and caches; only the header is accepted.
    bearer_methods_supported: ['header'],
    ...(oauth.scopes_supported === undefined ? {} : { scopes_supported: [...oauth.scopes_supported] }),
    ...(oauth.resource_name === undefined ? {} : { resource_name: oauth.resource_name }),
    ...(oauth.resource_documentation === undefined ? {} : { resource_documentation: oauth.resource_documentation }),
  };
}

/**
 * The metadata URL for a resource (RFC 9728 §3.1): the well-known prefix goes between the host and
 * the resource's path, so `https://gw.example.com/mcp` → `https://gw.example.com/.well-known/oauth-protected-resource/mcp`.
 */
export function resourceMetadataUrl(resource: string): string {
  const u = new URL(resource);
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '');
  return `${u.origin}${RESOURCE_METADATA_PATH}${path}${u.search}`;
}

/** Parameters of a Bearer challenge (RFC 6750 §3, RFC 9728 §5.1). */
export interface ChallengeParams {
  readonly resourceMetadata?: string | null;
  readonly error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope';
  readonly description?: string;
  readonly scope?: string;
}

/** The `WWW-Authenticate` value: `Bearer resource_metadata="…", error="…", …`. */
export function wwwAuthenticate(params: ChallengeParams = {}): string {
  const parts: string[] = [];
  if (params.resourceMetadata !== undefined && params.resourceMetadata !== null) {
    parts.push(`resource_metadata=${quote(params.resourceMetadata)}`);
  }
  if (params.error !== undefined) parts.push(`error=${quote(params.error)}`);
  if (params.description !== undefined) parts.push(`error_description=${quote(params.description)}`);
  if (params.scope !== undefined) parts.push(`scope=${quote(params.scope)}`);
  return parts.length === 0 ? 'Bearer' : `Bearer ${parts.join(', ')}`;
}

function quote(s: string): string {
  // RFC 6750 restricts these values to printable ASCII minus `"` and `\`; anything else is dropped
  // rather than escaped, since not every client unescapes quoted-strings.
  return `"${s.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '')}"`;
}

/** A response the processor sends as is. */
export interface MetadataResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * The gateway as an OAuth protected resource: answers the well-known metadata paths and builds
 * challenges that point clients at them. Build once per config.
 *
 * With `auth.oauth` the resource is the one configured. Without it (JWT issuers only) the resource
 * is the URL the client used, scheme and authority as the request names them (Envoy sets
 * `x-forwarded-proto` from the connection), and the authorization servers are the issuers: an
 * OAuth-capable client finds how to log in with no more configuration than the issuers.
 */
export class ProtectedResource {
  /** The configured resource's metadata; null when it is derived from each request. */
  readonly metadata: ProtectedResourceMetadata | null;
  /** Absolute URL of the configured resource's metadata document; null when derived. */
  readonly metadataUrl: string | null;
  private readonly issuers: readonly string[];
  private readonly paths: ReadonlySet<string>;
  private readonly body: string;

  /**
   * @param endpointPaths extra paths clients may treat as resources (e.g. `/servers/<name>/mcp`);
   *   their path-suffixed metadata URLs answer with the same document.
   * @param defaultPath the endpoint the bare well-known path describes when the resource is derived.
   */
  constructor(source: ResourceSource, endpointPaths: Iterable<string> = [], private readonly defaultPath = '/mcp') {
    const paths = new Set<string>([RESOURCE_METADATA_PATH]);
    if ('resource' in source) {
      this.metadata = buildResourceMetadata(source);
      this.metadataUrl = resourceMetadataUrl(source.resource);
      paths.add(new URL(this.metadataUrl).pathname);
    } else {
      this.metadata = null;
      this.metadataUrl = null;
      paths.add(RESOURCE_METADATA_PATH + defaultPath);
    }
    this.issuers = [...source.authorization_servers];
    this.body = this.metadata === null ? '' : JSON.stringify(this.metadata);
    for (const p of endpointPaths) paths.add(`${RESOURCE_METADATA_PATH}${p.startsWith('/') ? p : `/${p}`}`.replace(/\/$/, ''));
    this.paths = paths;
  }

  /**
   * The metadata response for a request path (query already stripped), or null if not ours.
   * `origin` is where the request was sent (requestTarget); a derived resource needs it.
   */
  respond(path: string, method: string, origin: string | null = null): MetadataResponse | null {
    if (!this.paths.has(path)) return null;
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
      return { status: 405, headers: { allow: 'GET, HEAD, OPTIONS' }, body: '' };
    }
    let body = this.body;
    if (this.metadata === null) {
      if (origin === null) return null;
      const resource = origin + (path.slice(RESOURCE_METADATA_PATH.length) || this.defaultPath);
      body = JSON.stringify({ resource, authorization_servers: this.issuers, bearer_methods_supported: ['header'] } satisfies ProtectedResourceMetadata);
    }
    return {
      status: 200,
      headers: {
        'content-type': 'application/json',
        'cache-control': 'public, max-age=300',
        // Public metadata; browser-based clients must be able to read it cross-origin.
        'access-control-allow-origin': '*',
      },
      body: method === 'GET' ? body : '',
    };
  }

  /**
   * The `WWW-Authenticate` value for a 401 (or a 403 with `insufficient_scope`). A derived
   * resource's metadata URL is built from where the request went (`target`); without it, none is named.
   */
  challenge(params: Omit<ChallengeParams, 'resourceMetadata'> = {}, target: RequestTarget | null = null): string {
    if (this.metadataUrl !== null) return wwwAuthenticate({ ...params, resourceMetadata: this.metadataUrl });
    const metadata = target?.origin == null ? null : `${target.origin}${RESOURCE_METADATA_PATH}${this.paths.has(RESOURCE_METADATA_PATH + target.path) ? target.path : this.defaultPath}`;
    return wwwAuthenticate({ ...params, resourceMetadata: metadata });
  }
}

/** An authority as a Host header may carry it: a host name, an IPv4 or bracketed IPv6 address, a port. */
const AUTHORITY = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * Where a request was sent, from its headers: the scheme Envoy saw (`x-forwarded-proto`, which
 * Envoy at the edge sets from the connection; else `:scheme`), the authority, and the path.
 */
export function requestTarget(headers: ReadonlyMap<string, string>): RequestTarget {
  const path = pathOf(headers.get(':path') ?? '/');
  const scheme = (headers.get('x-forwarded-proto') ?? headers.get(':scheme') ?? '').toLowerCase();
  const authority = headers.get(':authority') ?? '';
  const origin = (scheme === 'http' || scheme === 'https') && AUTHORITY.test(authority) ? `${scheme}://${authority.toLowerCase()}` : null;
  return { origin, path };
}
