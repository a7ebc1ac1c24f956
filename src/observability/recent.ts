import type { AuditRecord } from '../policy/audit.js';

/**
 * What the admin console shows of the recent past, held in this replica's memory and bounded:
 * the last access decisions, each server's health checks, which limits refused requests minute by
 * minute, and the buckets spent most recently. The request path writes to it only when the
 * console is on (it is null otherwise).
 */

/** One audit record as the console keeps it: when, and the record's own fields. */
export type AuditEntry = AuditRecord & { readonly at: string };

/** What the audit page can be narrowed to; every field is an exact match. */
export interface AuditFilter {
  readonly tenant?: string;
  readonly client?: string;
  readonly server?: string;
  readonly decision?: 'allow' | 'deny';
}

/** One health check of one server. */
export interface HealthSample {
  readonly at: string;
  readonly status: 'healthy' | 'degraded' | 'unhealthy';
  /** -1 when the check failed. */
  readonly latency_ms: number;
}

/** A change of a server's status. */
export interface HealthChange {
  readonly at: string;
  readonly from: string;
  readonly to: string;
  readonly error?: string;
}

/** Refusals of one limit in one minute. */
export interface LimitMinute {
  /** The minute's start (ISO). */
  readonly minute: string;
  readonly refused: number;
}

/** A bucket as its last decision left it. */
export interface BucketLevel {
  readonly limit: string;
  /** The bucket's key: which limit, and whose budget (client, user, tenant or address). */
  readonly key: string;
  readonly remaining: number;
  readonly capacity: number;
  readonly at: string;
  /** When the bucket is whole again if nothing more is spent (ISO). */
  readonly full_at: string;
}

const HEALTH_SAMPLES = 60;
const HEALTH_CHANGES = 50;
const LIMIT_MINUTES = 60;
/** Buckets remembered (the most recently spent ones); bounded whatever the number of callers. */
const BUCKETS = 1000;
/** Distinct limits counted; limits come from config, so this only guards against a surprise. */
const LIMITS = 256;

interface ServerTrack {
  readonly samples: HealthSample[];
  readonly changes: HealthChange[];
  lastStatus: string | null;
}

interface BucketEntry {
  readonly limit: string;
  readonly remaining: number;
  readonly capacity: number;
  readonly at: number;
  readonly fullAt: number;
}

export class RecentActivity {
  private readonly audits: (AuditEntry | undefined)[];
  private next = 0;
  private count = 0;
  private readonly servers = new Map<string, ServerTrack>();
  /** Per limit: minute (epoch minutes) → refusals, oldest first. */
  private readonly refusals = new Map<string, Map<number, number>>();
  /** Insertion order is recency order (a touched key is moved to the end). */
  private readonly buckets = new Map<string, BucketEntry>();

  constructor(
    readonly auditCapacity: number,
    private readonly now: () => number = Date.now,
  ) {
    this.audits = new Array<AuditEntry | undefined>(auditCapacity);
  }

  /** Keeps one access decision (the oldest one goes when the ring is full). */
  audit(record: AuditRecord): void {
    this.audits[this.next] = { at: new Date(this.now()).toISOString(), ...record };
    this.next = (this.next + 1) % this.auditCapacity;
    if (this.count < this.auditCapacity) this.count++;
  }

  /** The newest decisions first, those matching `filter`, at most `max`. */
  auditTail(filter: AuditFilter, max: number): AuditEntry[] {
    const out: AuditEntry[] = [];
    for (let i = 1; i <= this.count && out.length < max; i++) {
      const e = this.audits[(this.next - i + this.auditCapacity) % this.auditCapacity]!;
      if (filter.tenant !== undefined && e.tenant !== filter.tenant) continue;
      if (filter.client !== undefined && e.client_id !== filter.client) continue;
      if (filter.server !== undefined && e.server !== filter.server) continue;
      if (filter.decision !== undefined && e.decision !== filter.decision) continue;
      out.push(e);
    }
    return out;
  }

  /** How many decisions the ring holds. */
  get auditSize(): number {
    return this.count;
  }

  /** Records one health check of a server. */
  healthChecked(server: string, status: HealthSample['status'], latencyMs: number, error?: string): void {
    let t = this.servers.get(server);
    if (t === undefined) {
      t = { samples: [], changes: [], lastStatus: null };
      this.servers.set(server, t);
    }
    const at = new Date(this.now()).toISOString();
    t.samples.push({ at, status, latency_ms: latencyMs });
    if (t.samples.length > HEALTH_SAMPLES) t.samples.shift();
    if (t.lastStatus !== status) {
      t.changes.push({ at, from: t.lastStatus ?? 'unknown', to: status, ...(error === undefined ? {} : { error }) });
      if (t.changes.length > HEALTH_CHANGES) t.changes.shift();
      t.lastStatus = status;
    }
  }

  /** Forgets the history of servers no longer configured. */
  keepServers(names: ReadonlySet<string>): void {
    for (const name of this.servers.keys()) if (!names.has(name)) this.servers.delete(name);
  }

  /** A server's recent checks (oldest first) and status changes (newest first). */
  healthOf(server: string): { readonly samples: readonly HealthSample[]; readonly changes: readonly HealthChange[] } {
    const t = this.servers.get(server);
    return t === undefined ? { samples: [], changes: [] } : { samples: [...t.samples], changes: [...t.changes].reverse() };
  }

  /** A request refused by `limit` (its description). */
  limited(limit: string): void {
    let perMinute = this.refusals.get(limit);
    if (perMinute === undefined) {
      if (this.refusals.size >= LIMITS) return;
      perMinute = new Map();
      this.refusals.set(limit, perMinute);
    }
    const minute = Math.floor(this.now() / 60_000);
    perMinute.set(minute, (perMinute.get(minute) ?? 0) + 1);
    for (const m of perMinute.keys()) {
      if (m > minute - LIMIT_MINUTES) break;
      perMinute.delete(m);
    }
  }

  /** Refusals per limit over the last hour, one entry per minute (oldest first, empty minutes as 0). */
  refusalsByLimit(): { readonly limit: string; readonly total: number; readonly minutes: LimitMinute[] }[] {
    const current = Math.floor(this.now() / 60_000);
    const out = [];
    for (const [limit, perMinute] of this.refusals) {
      const minutes: LimitMinute[] = [];
      let total = 0;
      for (let m = current - LIMIT_MINUTES + 1; m <= current; m++) {
        const refused = perMinute.get(m) ?? 0;
        total += refused;
        minutes.push({ minute: new Date(m * 60_000).toISOString(), refused });
      }
      if (total > 0) out.push({ limit, total, minutes });
      // A limit refused nothing for an hour (or is gone from the config): it makes room for others.
      else this.refusals.delete(limit);
    }
    return out.sort((a, b) => b.total - a.total);
  }

  /** What a limit decision left in one bucket. */
  bucketSpent(key: string, limit: string, remaining: number, capacity: number, resetMs: number): void {
    const at = this.now();
    this.buckets.delete(key);
    this.buckets.set(key, { limit, remaining, capacity, at, fullAt: at + resetMs });
    if (this.buckets.size > BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
  }

  /** Buckets with at most `share` of their capacity left and not yet whole again, the emptiest first. */
  bucketsNearEmpty(max: number, share = 0.5): BucketLevel[] {
    const now = this.now();
    const open: [string, BucketEntry][] = [];
    for (const [key, b] of this.buckets) {
      if (b.fullAt <= now) this.buckets.delete(key);
      else if (b.remaining <= b.capacity * share) open.push([key, b]);
    }
    return open
      .sort(([, a], [, b]) => a.remaining / a.capacity - b.remaining / b.capacity || b.at - a.at)
      .slice(0, max)
      .map(([key, b]) => ({
        limit: b.limit,
        key,
        remaining: b.remaining,
        capacity: b.capacity,
        at: new Date(b.at).toISOString(),
        full_at: new Date(b.fullAt).toISOString(),
      }));
  }
}
