/**
 * An in-memory stand-in for the processor's own upstream calls, for unit tests of the request
 * stages: each configured server answers like a small stateful MCP server (initialize with a
 * session id, lists, tools/call, ping, DELETE), with no socket and no Envoy. Integration tests
 * use real servers through Envoy instead.
 */
import { pino, type Logger } from 'pino';
import { createContext } from '../../src/context.js';
import { parseConfig } from '../../src/config/load.js';
import type { RuntimeServer } from '../../src/config/runtime.js';
import type { GatewayContext } from '../../src/exchange.js';
import { Metrics } from '../../src/observability/metrics.js';
import type { ControlSessions } from '../../src/upstream/control.js';
import { UpstreamClient, type PostOptions, type UpstreamReply } from '../../src/upstream/client.js';

type Json = Record<string, unknown>;

/** What one in-memory server offers. */
export interface FakeServer {
  tools?: Json[];
  prompts?: Json[];
  resources?: Json[];
  resourceTemplates?: Json[];
  /** Every session is unknown (404) to every request after its handshake. */
  forgetful?: boolean;
  /** Unreachable: every call fails as a connection failure would. */
  down?: boolean;
  /** Never answers: every call waits until the test ends. */
  hang?: boolean;
}

/** One call the fake received. */
export interface FakeCallRecord {
  readonly server: string;
  readonly method: string;
  readonly sessionId: string | null;
  readonly httpMethod: 'POST' | 'DELETE';
  /** The JSON-RPC params the gateway sent (undefined for DELETE and params-less messages). */
  readonly params?: unknown;
}

export class InMemoryUpstream extends UpstreamClient {
  readonly calls: FakeCallRecord[] = [];
  private readonly live = new Map<string, Set<string>>();
  private next = 1;

  constructor(private readonly servers: Record<string, FakeServer>) {
    super('http://in-memory.invalid', 1000);
  }

  /** Drops every session of a server (an upstream restart). */
  restart(server: string): void {
    this.live.get(server)?.clear();
  }

  /** Live sessions of a server. */
  sessions(server: string): number {
    return this.live.get(server)?.size ?? 0;
  }

  /** How often `method` reached `server`. */
  count(server: string, method: string): number {
    return this.calls.filter((c) => c.server === server && c.method === method).length;
  }

  override async post(server: RuntimeServer, body: string | null, opts: PostOptions = {}): Promise<UpstreamReply> {
    const spec = this.servers[server.name] ?? {};
    const sessionId = opts.sessionId ?? null;
    const live = this.live.get(server.name) ?? new Set<string>();
    this.live.set(server.name, live);
    const msg = body === null ? null : (JSON.parse(body) as Json);
    const method = msg === null ? 'DELETE' : String(msg['method'] ?? 'response');
    this.calls.push({ server: server.name, method, sessionId, httpMethod: opts.method ?? 'POST', params: msg?.['params'] });
    if (spec.down === true) throw new Error('connect ECONNREFUSED');
    if (spec.hang === true) return new Promise<UpstreamReply>(() => {});
    const reply = (status: number, payload?: Json, newSession?: string): UpstreamReply => ({
      status,
      contentType: payload === undefined ? '' : 'application/json',
      sessionId: newSession ?? null,
      body: payload === undefined ? '' : JSON.stringify(payload),
    });
    if (method === 'initialize') {
      const id = `${server.name}-s${this.next++}`;
      live.add(id);
      const result = { protocolVersion: '2025-11-25', capabilities: { tools: {}, prompts: {}, resources: { subscribe: true }, logging: {} }, serverInfo: { name: server.name, version: '1' } };
      return reply(200, { jsonrpc: '2.0', id: msg!['id'], result }, id);
    }
    // A forgetful server drops the session once the handshake is done.
    if (spec.forgetful === true && sessionId !== null && method === 'notifications/initialized') {
      live.delete(sessionId);
      return reply(202);
    }
    if (sessionId === null || !live.has(sessionId)) return reply(404, { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
    if (opts.method === 'DELETE') {
      live.delete(sessionId);
      return reply(200);
    }
    if (msg!['id'] === undefined) return reply(202);
    const result = ((): Json => {
      switch (method) {
        case 'tools/list':
          return { tools: spec.tools ?? [] };
        case 'prompts/list':
          return { prompts: spec.prompts ?? [] };
        case 'resources/list':
          return { resources: spec.resources ?? [] };
        case 'resources/templates/list':
          return { resourceTemplates: spec.resourceTemplates ?? [] };
        case 'tools/call':
          return { content: [{ type: 'text', text: `${server.name}: ${JSON.stringify((msg!['params'] as Json)['arguments'] ?? {})}` }] };
        default:
          return {};
      }
    })();
    return reply(200, { jsonrpc: '2.0', id: msg!['id'], result });
  }
}

/**
 * The processor's request context for a config, with every upstream answered in memory by
 * {@link InMemoryUpstream}. `servers` lists the fake servers; their config entries are made up.
 */
export async function inMemoryContext(
  servers: Record<string, FakeServer>,
  extraConfig: Record<string, unknown> = {},
  log: Logger = pino({ level: 'silent' }),
): Promise<{ ctx: GatewayContext; upstream: InMemoryUpstream; control: ControlSessions; close(): Promise<void> }> {
  const upstream = new InMemoryUpstream(servers);
  const config = parseConfig(
    { ...extraConfig, servers: Object.fromEntries(Object.keys(servers).map((name) => [name, { url: 'http://127.0.0.1:1/mcp', ...((extraConfig['servers'] as Record<string, object> | undefined)?.[name] ?? {}) }])) },
    {},
  );
  const created = await createContext(config, log, new Metrics({ processMetrics: false }), process.cwd(), () => upstream);
  return { ctx: created.context, upstream, control: created.control, close: () => created.close() };
}
