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
 */
export class ProtectedResource {
  /** Absolute URL of the metadata document, for `resource_metadata` in challenges. */
  readonly metadataUrl: string;
  readonly metadata: ProtectedResourceMetadata;
  private readonly paths: ReadonlySet<string>;
  private readonly body: string;

  /**
   * @param endpointPaths extra paths clients may treat as resources (e.g. `/servers/<name>/mcp`);
   *   their path-suffixed metadata URLs answer with the same document.
   */
  constructor(oauth: OAuthResourceConfig, endpointPaths: Iterable<string> = []) {
    this.metadata = buildResourceMetadata(oauth);
    this.metadataUrl = resourceMetadataUrl(oauth.resource);
    this.body = JSON.stringify(this.metadata);
    const paths = new Set<string>([RESOURCE_METADATA_PATH, new URL(this.metadataUrl).pathname]);
    for (const p of endpointPaths) paths.add(`${RESOURCE_METADATA_PATH}${p.startsWith('/') ? p : `/${p}`}`.replace(/\/$/, ''));
    this.paths = paths;
  }

  /** The metadata response for a request path (query already stripped), or null if not ours. */
  respond(path: string, method: string): MetadataResponse | null {
    if (!this.paths.has(path)) return null;
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
      return { status: 405, headers: { allow: 'GET, HEAD, OPTIONS' }, body: '' };
    }
    return {
      status: 200,
      headers: {
        'content-type': 'application/json',
        'cache-control': 'public, max-age=300',
        // Public metadata; browser-based clients must be able to read it cross-origin.
        'access-control-allow-origin': '*',
      },
      body: method === 'GET' ? this.body : '',
    };
  }

  /** The `WWW-Authenticate` value for a 401 (or a 403 with `insufficient_scope`). */
  challenge(params: Omit<ChallengeParams, 'resourceMetadata'> = {}): string {
    return wwwAuthenticate({ ...params, resourceMetadata: this.metadataUrl });
  }
}
