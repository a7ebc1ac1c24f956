import type { BlockedToolsConfig, PoliciesConfig, TenantsConfig } from './schema.js';
import { GlobSet, globMatches, type GlobOptions } from '../lib/glob.js';
import {
  canonicalizeUri,
  canonicalizeUriPattern,
  foldForDeny,
  suspiciousName,
  suspiciousUriCharacters,
  type SuspiciousReason,
} from './names.js';

/**
 * The tenant every caller belongs to when no `tenants` are configured: it sees every server, and
 * policies reach it only through `tenant: "*"`.
 */
export const IMPLICIT_TENANT = 'default';

/** Why access was granted or refused; the audit log's `reason`. */
export type AccessReason =
  | 'allowed'
  | 'unknown_tenant'
  | 'unknown_server'
  | 'server_not_in_tenant'
  | 'blocked'
  | 'denied_by_policy'
  | 'not_in_allow_list'
  | 'suspicious_name'
  | 'suspicious_uri'
  | 'pending_approval';

/** One access decision. Refusals of tools, prompts and URIs must look to the client like "not found". */
export interface AccessDecision {
  readonly allowed: boolean;
  readonly reason: AccessReason;
  /** The rule that decided (`policies[1].tools.denied[0] "delete_*"`) or what was suspicious; for the audit log. */
  readonly detail: string | null;
}

const ALLOWED: AccessDecision = Object.freeze({ allowed: true, reason: 'allowed', detail: null });
const UNKNOWN_TENANT: AccessDecision = Object.freeze({ allowed: false, reason: 'unknown_tenant', detail: null });
const UNKNOWN_SERVER: AccessDecision = Object.freeze({ allowed: false, reason: 'unknown_server', detail: null });
const NOT_IN_TENANT: AccessDecision = Object.freeze({ allowed: false, reason: 'server_not_in_tenant', detail: null });
const NOT_IN_ALLOW_LIST: AccessDecision = Object.freeze({ allowed: false, reason: 'not_in_allow_list', detail: null });

function deny(reason: AccessReason, detail: string | null): AccessDecision {
  return { allowed: false, reason, detail };
}

/** A pattern with the label the audit log names it by. */
interface Source {
  readonly label: string;
  /** The pattern in the form it is matched in (folded for deny rules, canonical for URIs). */
  readonly pattern: string;
}

/** Deny patterns plus their labels, so a refusal can name the rule that made it. */
interface Matcher {
  readonly set: GlobSet;
  readonly labels: readonly string[];
}

interface NameRules {
  /** null: no allow list applies, everything not denied is allowed. */
  readonly allow: GlobSet | null;
  readonly deny: Matcher | null;
}

interface UriRules {
  readonly allow: GlobSet | null;
  readonly deny: Matcher | null;
}

interface PairRules {
  readonly tools: NameRules;
  readonly prompts: NameRules;
  /** null: no resource rule applies to this tenant and server. */
  readonly resources: UriRules | null;
  readonly blocked: Matcher | null;
}

/** Inputs of {@link AccessControl}: the validated config sections plus the server names. */
export interface AccessControlInput {
  readonly servers: Iterable<string>;
  readonly tenants?: TenantsConfig | undefined;
  readonly policies?: PoliciesConfig | undefined;
  readonly blockedTools?: BlockedToolsConfig | undefined;
}

const URI_GLOB: GlobOptions = { questionMark: false };
const NO_RULES: NameRules = Object.freeze({ allow: null, deny: null });

/**
 * Access policy compiled for the request path. Built once per config: every (tenant, server) pair
 * gets its merged rules up front, so a check is two Map lookups and a few set or prefix tests.
 *
 * Semantics: a policy applies to a pair when its `tenant` is the tenant or `*` and one of its
 * `servers` globs matches. Allow lists of all applying policies add up; with none, everything not
 * denied is allowed. Any deny — a policy's `denied`, or the global `blocked_tools` — wins. Checks run
 * on the upstream's own name (after the gateway's prefix is removed), see ./names.ts for how names
 * are vetted and folded.
 */
export class AccessControl {
  private readonly servers: ReadonlySet<string>;
  private readonly pairs: ReadonlyMap<string, ReadonlyMap<string, PairRules>>;

  constructor(input: AccessControlInput) {
    const servers = [...input.servers];
    this.servers = new Set(servers);
    const policies = input.policies ?? [];
    const blocked = input.blockedTools ?? [];
    const tenants: [string, readonly string[]][] =
      input.tenants === undefined ? [[IMPLICIT_TENANT, ['*']]] : Object.entries(input.tenants).map(([n, t]) => [n, t.servers]);

    // Pairs governed by the same policies share one compiled rule set.
    const shared = new Map<string, PairRules>();
    const pairs = new Map<string, Map<string, PairRules>>();
    for (const [tenant, members] of tenants) {
      const perServer = new Map<string, PairRules>();
      for (const server of servers) {
        if (!members.some((m) => globMatches(m, server))) continue;
        const applying = policies
          .map((p, i) => ({ p, i }))
          .filter(({ p }) => (p.tenant === '*' || p.tenant === tenant) && p.servers.some((s) => globMatches(s, server)));
        const blockedHere = blockedFor(blocked, server);
        const key = `${applying.map((a) => a.i).join(',')}|${blockedHere.map((b) => b.i).join(',')}`;
        let rules = shared.get(key);
        if (rules === undefined) {
          rules = compilePair(applying, blockedHere);
          shared.set(key, rules);
        }
        perServer.set(server, rules);
      }
      pairs.set(tenant, perServer);
    }
    this.pairs = pairs;
  }

  /** Whether the tenant may see and reach the server at all. */
  canUseServer(tenant: string, server: string): AccessDecision {
    const pair = this.pair(tenant, server);
    return 'allowed' in pair ? pair : ALLOWED;
  }

  /** Whether the tenant may see and call a tool, by its upstream name. */
  canUseTool(tenant: string, server: string, upstreamName: string): AccessDecision {
    const pair = this.pair(tenant, server);
    if ('allowed' in pair) return pair;
    return checkName(pair.tools, pair.blocked, upstreamName);
  }

  /** Whether the tenant may see and get a prompt, by its upstream name. */
  canUsePrompt(tenant: string, server: string, upstreamName: string): AccessDecision {
    const pair = this.pair(tenant, server);
    if ('allowed' in pair) return pair;
    return checkName(pair.prompts, null, upstreamName);
  }

  /** Whether the tenant may see, read or subscribe to a resource, by its upstream URI. */
  canUseResource(tenant: string, server: string, upstreamUri: string): AccessDecision {
    const pair = this.pair(tenant, server);
    if ('allowed' in pair) return pair;
    const chars = suspiciousUriCharacters(upstreamUri);
    if (chars !== null) return deny('suspicious_uri', chars);
    const rules = pair.resources;
    if (rules === null) return ALLOWED;
    const c = canonicalizeUri(upstreamUri);
    if (!c.ok) return deny('suspicious_uri', c.reason);
    if (rules.deny !== null) {
      const hit = rules.deny.set.firstMatch(c.denyForm);
      if (hit >= 0) return deny('denied_by_policy', rules.deny.labels[hit] ?? null);
    }
    if (rules.allow !== null && !rules.allow.test(c.canonical)) return NOT_IN_ALLOW_LIST;
    return ALLOWED;
  }

  /**
   * Whether a resource template may be listed. A template stands for many URIs, so only the
   * server and the template's characters are checked here; each concrete URI is checked on read.
   */
  canListResourceTemplate(tenant: string, server: string, uriTemplate: string): AccessDecision {
    const pair = this.pair(tenant, server);
    if ('allowed' in pair) return pair;
    const chars = suspiciousUriCharacters(uriTemplate);
    return chars === null ? ALLOWED : deny('suspicious_uri', chars);
  }

  private pair(tenant: string, server: string): PairRules | AccessDecision {
    const perServer = this.pairs.get(tenant);
    if (perServer === undefined) return UNKNOWN_TENANT;
    const rules = perServer.get(server);
    if (rules !== undefined) return rules;
    return this.servers.has(server) ? NOT_IN_TENANT : UNKNOWN_SERVER;
  }
}

function checkName(rules: NameRules, blocked: Matcher | null, name: string): AccessDecision {
  const bad: SuspiciousReason | null = suspiciousName(name);
  if (bad !== null) return deny('suspicious_name', bad);
  if (blocked !== null || rules.deny !== null) {
    const folded = foldForDeny(name);
    if (blocked !== null) {
      const hit = blocked.set.firstMatch(folded);
      if (hit >= 0) return deny('blocked', blocked.labels[hit] ?? null);
    }
    if (rules.deny !== null) {
      const hit = rules.deny.set.firstMatch(folded);
      if (hit >= 0) return deny('denied_by_policy', rules.deny.labels[hit] ?? null);
    }
  }
  if (rules.allow !== null && !rules.allow.test(name)) return NOT_IN_ALLOW_LIST;
  return ALLOWED;
}

function matcher(sources: readonly Source[], opts: GlobOptions = {}): Matcher | null {
  if (sources.length === 0) return null;
  return {
    set: new GlobSet(
      sources.map((s) => s.pattern),
      opts,
    ),
    labels: sources.map((s) => s.label),
  };
}

interface Applying {
  readonly p: PoliciesConfig[number];
  readonly i: number;
}

interface Blocked {
  /** The tool part, matched folded. */
  readonly pattern: string;
  /** The entry as configured, for the audit label. */
  readonly entry: string;
  readonly i: number;
}

function compilePair(applying: readonly Applying[], blocked: readonly Blocked[]): PairRules {
  return Object.freeze({
    tools: compileNames(applying, 'tools'),
    prompts: compileNames(applying, 'prompts'),
    resources: compileUris(applying),
    blocked: matcher(blocked.map((b) => ({ label: `blocked_tools[${b.i}] ${JSON.stringify(b.entry)}`, pattern: foldForDeny(b.pattern) }))),
  });
}

function compileNames(applying: readonly Applying[], kind: 'tools' | 'prompts'): NameRules {
  let allowPatterns: string[] | null = null;
  const denySources: Source[] = [];
  for (const { p, i } of applying) {
    const r = p[kind];
    if (r === undefined) continue;
    if (r.allowed !== undefined) (allowPatterns ??= []).push(...r.allowed.map((a) => a.normalize('NFC')));
    r.denied?.forEach((d, j) => {
      denySources.push({ label: `policies[${i}].${kind}.denied[${j}] ${JSON.stringify(d)}`, pattern: foldForDeny(d) });
    });
  }
  if (allowPatterns === null && denySources.length === 0) return NO_RULES;
  return Object.freeze({
    // An empty allow list is explicit: nothing is allowed (an empty set matches nothing).
    allow: allowPatterns === null ? null : new GlobSet(allowPatterns),
    deny: matcher(denySources),
  });
}

function compileUris(applying: readonly Applying[]): UriRules | null {
  let allowPatterns: string[] | null = null;
  const denySources: Source[] = [];
  let any = false;
  for (const { p, i } of applying) {
    const r = p.resources;
    if (r === undefined) continue;
    any = true;
    if (r.allowed !== undefined) (allowPatterns ??= []).push(...r.allowed.map((a) => canonicalizeUriPattern(a).canonical));
    r.denied?.forEach((d, j) => {
      const label = `policies[${i}].resources.denied[${j}] ${JSON.stringify(d)}`;
      denySources.push({ label, pattern: canonicalizeUriPattern(d).denyForm });
    });
  }
  if (!any) return null;
  return Object.freeze({
    allow: allowPatterns === null ? null : new GlobSet(allowPatterns, URI_GLOB),
    deny: matcher(denySources, URI_GLOB),
  });
}

/** `blocked_tools` entries that apply to a server, tool part only: `tool-glob` or `server-glob/tool-glob`. */
function blockedFor(blocked: readonly string[], server: string): Blocked[] {
  const out: Blocked[] = [];
  blocked.forEach((entry, i) => {
    const slash = entry.indexOf('/');
    if (slash < 0) out.push({ pattern: entry, entry, i });
    else if (globMatches(entry.slice(0, slash), server)) out.push({ pattern: entry.slice(slash + 1), entry, i });
  });
  return out;
}
