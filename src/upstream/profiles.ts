import { isObject, type JsonObject } from '../mcp/message.js';
import { parseClientMetadata } from '../sessions/limits.js';

/**
 * What a server can tell apart about a client from its `initialize`: which capabilities it
 * declared and which of their sub-capabilities (elicitation's `form` and `url`, `roots.listChanged`,
 * the task requests it accepts). Servers that register tools only for clients that can answer
 * them (sampling, elicitation, roots, tasks) list different tools to clients of different
 * profiles, and the same tools to clients of one profile: the gateway keeps one catalog per
 * profile, fetched over a session of its own that declares the profile's capabilities.
 */
export interface ClientProfile {
  /** The canonical shape as JSON: equal for clients a server cannot tell apart. */
  readonly key: string;
  /** The capabilities the gateway declares in its own sessions for this profile. */
  readonly capabilities: JsonObject;
}

/** A client that declares nothing (and the gateway's own health and catalog-watch sessions). */
export const NO_CAPABILITIES: ClientProfile = Object.freeze({ key: '{}', capabilities: Object.freeze({}) });

/**
 * The client capabilities a server can act on, with the sub-capabilities that tell clients apart.
 * Anything else a client declares (experimental ones, unknown names, values) is left out: it would
 * only split the catalogs, and the gateway's own sessions declare only what servers understand.
 */
const KNOWN: Readonly<Record<string, readonly string[]>> = {
  sampling: ['context', 'tools'],
  elicitation: ['form', 'url'],
  roots: ['listChanged'],
  tasks: ['list', 'cancel', 'requests'],
};

/** The profile of a client's capabilities: which known ones it declared, and their known parts. */
export function profileOf(capabilities: JsonObject): ClientProfile {
  const shape: JsonObject = {};
  for (const [name, parts] of Object.entries(KNOWN)) {
    const declared = capabilities[name];
    // A capability is an object; anything else declares nothing a server could use.
    if (!Object.hasOwn(capabilities, name) || !isObject(declared)) continue;
    const kept: JsonObject = {};
    for (const part of parts) {
      const v = declared[part];
      if (part === 'listChanged' ? v === true : isObject(v)) kept[part] = part === 'requests' ? requestsShape(v as JsonObject) : v === true ? true : {};
    }
    shape[name] = kept;
  }
  const key = JSON.stringify(shape);
  return key === NO_CAPABILITIES.key ? NO_CAPABILITIES : { key, capabilities: shape };
}

/** `tasks.requests`: which requests a client runs as tasks (`sampling.createMessage`, `elicitation.create`). */
function requestsShape(requests: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [kind, method] of [
    ['sampling', 'createMessage'],
    ['elicitation', 'create'],
  ] as const) {
    const k = requests[kind];
    if (isObject(k) && isObject(k[method])) out[kind] = { [method]: {} };
  }
  return out;
}

/** How many parsed client metadata texts are remembered (the same few recur across sessions). */
const MEMO_SIZE = 1024;

/**
 * The profiles in use, least recently used first, at most `max` (each costs a session and a
 * catalog per server); the one pushed out is handed to `onEvict` so its catalog and sessions go.
 * A client without capabilities is always served by the default catalog.
 */
export class ClientProfiles {
  private readonly memo = new Map<string, ClientProfile>();
  private readonly live = new Map<string, ClientProfile>();

  constructor(
    private readonly max: number,
    private readonly onEvict: (profile: ClientProfile) => void,
  ) {}

  /** The profile of a session's client metadata (as `clientMetadataText` keeps it). */
  of(clientMetadata: string): ClientProfile {
    let profile = this.memo.get(clientMetadata);
    if (profile === undefined) {
      profile = profileOf(parseClientMetadata(clientMetadata).capabilities);
      if (this.memo.size >= MEMO_SIZE) this.memo.clear();
      this.memo.set(clientMetadata, profile);
    }
    if (profile === NO_CAPABILITIES) return profile;
    const live = this.live.get(profile.key);
    this.live.delete(profile.key);
    this.live.set(profile.key, live ?? profile);
    if (this.live.size > this.max) {
      const [oldest, evicted] = this.live.entries().next().value!;
      this.live.delete(oldest);
      this.onEvict(evicted);
    }
    return live ?? profile;
  }
}
