import { GatewayError } from '../errors/gateway-error.js';
import { decodeHeaderValue, encodeHeaderValue, MCP_METHOD_HEADER, MCP_NAME_HEADER, NAMED_PARAM, PROTOCOL_VERSION_HEADER } from './headers.js';
import { isObject, type JsonObject } from './message.js';
import { isSupportedVersion, LOG_LEVELS, SUPPORTED_PROTOCOL_VERSIONS } from './protocol.js';

/**
 * MCP 2026-07-28 and later ("modern"): no sessions and no handshake. Every request names its
 * revision, the client's capabilities and (optionally) the client in `params._meta`, repeats its
 * method (and the name it acts on) in headers, and every result says its `resultType`.
 */

/** The modern revisions the gateway speaks, newest first. */
export const MODERN_PROTOCOL_VERSIONS: readonly string[] = ['2026-07-28'];

/** `_meta` keys of a modern request and result. */
export const META = {
  protocolVersion: 'io.modelcontextprotocol/protocolVersion',
  clientCapabilities: 'io.modelcontextprotocol/clientCapabilities',
  clientInfo: 'io.modelcontextprotocol/clientInfo',
  logLevel: 'io.modelcontextprotocol/logLevel',
  serverInfo: 'io.modelcontextprotocol/serverInfo',
} as const;

/** `_meta` key tying a notification to the subscriptions/listen request that asked for it. */
export const SUBSCRIPTION_ID_META = 'io.modelcontextprotocol/subscriptionId';

/** Most resource URIs one listen request, or one client session, may subscribe to through the gateway. */
export const MAX_RESOURCE_SUBSCRIPTIONS = 256;

/**
 * Whether a request may be of the modern era: its `MCP-Protocol-Version` header names something
 * other than a session-based revision (a modern revision, known to the gateway or not). Without
 * the header, or with a session-based revision in it, it is a session-based request.
 */
export function mayBeModern(headers: { get(name: string): string | undefined }): boolean {
  const v = headers.get(PROTOCOL_VERSION_HEADER);
  return v !== undefined && !isSupportedVersion(v);
}

/** Whether a version is one of the modern revisions the gateway speaks. */
export function isModernVersion(v: string | undefined): boolean {
  return v !== undefined && MODERN_PROTOCOL_VERSIONS.includes(v);
}

/** Whether a message claims a modern revision in its own `_meta` (the other half of the era test). */
export function claimsModern(params: JsonObject | undefined): boolean {
  const meta = params?.['_meta'];
  return isObject(meta) && typeof meta[META.protocolVersion] === 'string';
}

/** What a 2026-07-28 client that does not name itself (`clientInfo` is optional there) is called upstream. */
export const ANONYMOUS_CLIENT_INFO: Readonly<JsonObject> = Object.freeze({ name: 'mcp-client', version: '0' });

/** What the gateway says about the client it speaks for when it calls a modern server. */
export interface ClientEnvelope {
  readonly capabilities: JsonObject;
  readonly clientInfo: JsonObject;
  /** The level the client wants log messages at (none: no log messages). */
  readonly logLevel?: string | null;
}

/** The requests whose answer may be `input_required` (2026-07-28's multi-round-trip requests). */
export const MULTI_ROUND_TRIP: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

/** The client capabilities that let a server ask the client something (sampling, elicitation, roots). */
const INPUT_CAPABILITIES: readonly string[] = ['elicitation', 'roots', 'sampling'];

/** The input capabilities among `capabilities` (in a fixed order), or null when it declares none. */
export function inputCapabilities(capabilities: JsonObject): JsonObject | null {
  let out: JsonObject | null = null;
  for (const k of INPUT_CAPABILITIES) if (isObject(capabilities[k])) (out ??= {})[k] = capabilities[k];
  return out;
}

/** `capabilities` without the input ones. */
export function withoutInputCapabilities(capabilities: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(capabilities)) if (!INPUT_CAPABILITIES.includes(k)) out[k] = v;
  return out;
}

/**
 * A request's params as a modern server takes them: the revision, the client's capabilities and
 * info in `_meta` beside what `_meta` already held.
 */
export function withEnvelope(params: JsonObject | undefined, version: string, client: ClientEnvelope): JsonObject {
  const p = params ?? {};
  const meta = isObject(p['_meta']) ? p['_meta'] : {};
  const out: JsonObject = { ...meta, [META.protocolVersion]: version, [META.clientCapabilities]: client.capabilities, [META.clientInfo]: client.clientInfo };
  if (client.logLevel !== undefined && client.logLevel !== null) out[META.logLevel] = client.logLevel;
  return { ...p, _meta: out };
}

/** The routing headers a modern request repeats from its body (Mcp-Name only for methods that name something). */
export function routingHeaders(method: string, params: JsonObject | undefined): { method: string; name: string | null } {
  const param = NAMED_PARAM[method];
  const v = param === undefined ? undefined : params?.[param];
  return { method, name: typeof v === 'string' ? encodeHeaderValue(v) : null };
}

/** What a modern request says about its client. */
export interface Envelope {
  readonly protocolVersion: string;
  readonly capabilities: JsonObject;
  readonly clientInfo: JsonObject | null;
  /** The log level the client asked notifications/message for (none: no log messages). */
  readonly logLevel: string | null;
}

/**
 * Checks a modern request's envelope and routing headers against its body, in the order the
 * revision gives: the `_meta` fields (-32602), the version header against `_meta` (-32020), the
 * version itself (-32022), then `Mcp-Method` and `Mcp-Name` (-32020).
 */
export function readEnvelope(headers: { get(name: string): string | undefined }, method: string, params: JsonObject | undefined): Envelope {
  const meta = params?.['_meta'];
  const missing: string[] = [];
  if (!isObject(meta)) missing.push('_meta');
  else {
    if (typeof meta[META.protocolVersion] !== 'string') missing.push(META.protocolVersion);
    if (!isObject(meta[META.clientCapabilities])) missing.push(META.clientCapabilities);
  }
  if (missing.length > 0 || !isObject(meta)) {
    throw new GatewayError('GW_ERR_ENVELOPE_INVALID', `Invalid params: missing ${missing.join(', ')}`, { data: { envelope: { missing } } });
  }
  const version = meta[META.protocolVersion] as string;
  const header = headers.get(PROTOCOL_VERSION_HEADER);
  if (header !== version) {
    throw new GatewayError('GW_ERR_HEADER_MISMATCH', `Header mismatch: MCP-Protocol-Version ${JSON.stringify(header)} is not the request's ${JSON.stringify(version)}`, {
      data: { mismatch: { header: PROTOCOL_VERSION_HEADER } },
    });
  }
  if (!MODERN_PROTOCOL_VERSIONS.includes(version)) {
    throw new GatewayError('GW_ERR_VERSION_UNSUPPORTED', `Unsupported protocol version: ${version}`, {
      data: { supported: [...MODERN_PROTOCOL_VERSIONS, ...SUPPORTED_PROTOCOL_VERSIONS], requested: version },
    });
  }
  const claimed = headers.get(MCP_METHOD_HEADER);
  if (claimed !== method) {
    throw new GatewayError('GW_ERR_HEADER_MISMATCH', `Header mismatch: Mcp-Method ${claimed === undefined ? 'is missing' : 'is not the body\'s method'}`, {
      data: { mismatch: { header: MCP_METHOD_HEADER } },
    });
  }
  const param = NAMED_PARAM[method];
  if (param !== undefined) {
    const name = headers.get(MCP_NAME_HEADER);
    if (name === undefined || decodeHeaderValue(name) !== params?.[param]) {
      throw new GatewayError('GW_ERR_HEADER_MISMATCH', `Header mismatch: Mcp-Name ${name === undefined ? 'is missing' : `is not the body's ${param}`}`, {
        data: { mismatch: { header: MCP_NAME_HEADER } },
      });
    }
  }
  const info = meta[META.clientInfo];
  const level = meta[META.logLevel];
  if (level !== undefined && (typeof level !== 'string' || !LOG_LEVELS.includes(level))) {
    throw new GatewayError('GW_ERR_ENVELOPE_INVALID', `Invalid params: ${META.logLevel} must be one of ${LOG_LEVELS.join(', ')}`, { data: { envelope: { invalid: [META.logLevel] } } });
  }
  return {
    protocolVersion: version,
    capabilities: meta[META.clientCapabilities] as JsonObject,
    clientInfo: isObject(info) ? info : null,
    logLevel: typeof level === 'string' ? level : null,
  };
}
