import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';
import { eventFor, KNOWN_METHODS, NONE, OTHER } from './names.js';

/** Outcome of one MCP operation. */
export type OperationStatus = 'success' | 'error' | 'tool_error' | 'cancelled';

/** Everything known about one MCP operation when it ends. */
export interface OperationRecord {
  readonly method: string | null;
  readonly server: string | null;
  /** Tool name as the upstream knows it (tools/call only). */
  readonly tool: string | null;
  /** Whether `tool` is a known catalog entry (unknown names collapse into one label value). */
  readonly toolKnown: boolean;
  readonly clientId: string | null;
  readonly tenant: string | null;
  readonly status: OperationStatus;
  readonly httpStatus: number | null;
  readonly errorCode: string | number | null;
  readonly traceId: string;
  readonly durationMs: number;
  readonly requestBytes: number | null;
  readonly endpoint: 'aggregated' | 'passthrough' | null;
  /** The access decision that let it through (decision, reason, auth method, target), when audited. */
  readonly access?: Readonly<Record<string, string | null>>;
  readonly arguments?: unknown;
  /** What the filters did to the request (`<filter>:<action>`). */
  readonly filters?: readonly string[];
  /** What the answer cache did (hit, miss, filled). */
  readonly cache?: string;
}

/**
 * Turns finished operations into metrics and one structured log line each (the seed's shape:
 * timestamp, level, event, client_id, tenant, server, tool, duration_ms, status, trace_id).
 */
export class OperationObserver {
  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly logOperations: boolean,
  ) {}

  record(op: OperationRecord): void {
    const method = op.method === null ? OTHER : KNOWN_METHODS.has(op.method) ? op.method : OTHER;
    this.metrics.operation(
      {
        method,
        server: op.server ?? NONE,
        tool: op.tool === null ? NONE : op.toolKnown ? op.tool : OTHER,
        tenant: op.tenant ?? NONE,
        status: op.status,
      },
      op.durationMs / 1000,
      op.requestBytes,
    );
    if (!this.logOperations) return;
    const line: Record<string, unknown> = {
      event: eventFor(op.method),
      client_id: op.clientId,
      tenant: op.tenant,
      server: op.server,
      tool: op.tool,
      duration_ms: Math.round(op.durationMs * 1000) / 1000,
      status: op.status,
      trace_id: op.traceId,
      mcp_method: op.method === null ? null : op.method.slice(0, 100),
      endpoint: op.endpoint,
      http_status: op.httpStatus,
    };
    if (op.access !== undefined) Object.assign(line, op.access);
    if (op.errorCode !== null) line['error_code'] = op.errorCode;
    if (op.arguments !== undefined) line['arguments'] = op.arguments;
    if (op.filters !== undefined) line['filters'] = op.filters;
    if (op.cache !== undefined) line['cache'] = op.cache;
    const level = op.status === 'error' && (op.httpStatus ?? 0) >= 500 ? 'warn' : 'info';
    this.log[level](line, 'mcp operation');
  }
}
