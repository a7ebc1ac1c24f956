import type { Logger } from 'pino';
import type { AnswerCache } from '../cache/answers.js';
import type { ToolPinning } from '../filters/pins.js';
import type { Authenticator } from '../auth/identity.js';
import type { UpstreamCredentials } from '../auth/upstream-credentials.js';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import type { Metrics } from '../observability/metrics.js';
import type { OperationObserver } from '../observability/operations.js';
import type { AccessControl } from '../policy/access.js';
import type { TenantDirectory } from '../policy/tenants.js';
import type { ToolCallTransforms } from '../filters/transform.js';
import type { PiiFilters } from '../filters/pii.js';
import type { ArgumentValidation } from '../filters/validate.js';
import type { Limiter } from '../ratelimit/limiter.js';
import type { RecentActivity } from '../observability/recent.js';

/** Identity, tenancy and access policy, compiled once per config. */
export interface Guard {
  readonly auth: Authenticator;
  readonly tenants: TenantDirectory;
  readonly access: AccessControl;
  readonly credentials: UpstreamCredentials;
  /** Whether per-name rules (policies, blocked_tools, enforced tool pins) exist, so lists need filtering per caller. */
  readonly filtersNames: boolean;
  /** Tool pinning, when configured: tools whose changed definition waits for approval are withheld. */
  readonly pins: ToolPinning | null;
  /** Whether access decisions are written as audit lines (any identity or policy feature configured). */
  readonly auditing: boolean;
  /**
   * Whether an allowed request's decision rides on its operation line instead of a line of its
   * own (operation lines are on); a refusal always gets its own line.
   */
  readonly foldsAllowed: boolean;
}

/** What the shared request stages need; built once per loaded config. */
export interface RequestContext {
  readonly rc: RuntimeConfig;
  readonly guard: Guard;
  readonly limiter: Limiter;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly observer: OperationObserver;
  /** Debug option: tools/call arguments go into operation log lines. */
  readonly logArguments: boolean;
  /** Whether a tool name is in a server's catalog (no I/O), so metric labels stay bounded. */
  readonly knownTool: (server: string, tool: string) => boolean;
  /** A routed request found a server unreachable: stop offering it until it answers again. */
  readonly reportUnreachable: (server: RuntimeServer) => void;
  /** The transformation stage's filters on tool calls, per server. */
  readonly transforms: ToolCallTransforms;
  /** The PII and secret filter of each server. */
  readonly pii: PiiFilters;
  /** Which tool calls have their arguments checked against the tool's inputSchema. */
  readonly validation: ArgumentValidation;
  /** Which answers of servers are cached, and the cache. */
  readonly answers: AnswerCache;
  /** The console's record of recent decisions, refusals and buckets; null while the console is off. */
  readonly recent: RecentActivity | null;
  /** A server's tool's `inputSchema` (or `outputSchema`) from the catalog every client gets (null: not known). */
  readonly toolSchema: (server: string, tool: string, which?: 'inputSchema' | 'outputSchema') => Promise<unknown>;
}
