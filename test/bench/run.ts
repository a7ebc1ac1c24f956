/**
 * `npm run bench`: tools/call latency and throughput through the gateway versus its baselines, in
 * one run, on loopback. See BENCHMARKS.md for what the rows mean and how to read the figures.
 *
 *   (a) upstream   the demo MCP server directly
 *   (b) envoy      Envoy without the processor (the gateway's bootstrap minus ext_proc)
 *   (c) gw /mcp    the full gateway, aggregated endpoint, tools/call alpha__echo
 *   (d) gw pass    the full gateway, passthrough endpoint /servers/alpha/mcp, tools/call echo
 *   (e) + API key  as (c), with auth.api_keys; every request carries `Authorization: Bearer <key>`
 *   (f) + JWT      as (c), with auth.jwt (RS256, JWKS fetched over HTTP); one token per worker
 *   (g) + limit    as (c), with a rate limit on alpha that never triggers (in-memory store)
 *   (h) + Redis    as (g), with redis.url: sessions and the limit's buckets live in Redis
 *   (i) JSON up    as (c), but the upstream answers POSTs with application/json instead of SSE
 *   (j) tools/list (c)'s gateway answering the aggregated tools/list from its catalog
 *   (k) native     Envoy's own MCP filters (envoy.filters.http.mcp + mcp_router) instead of the
 *                  processor, aggregating the one server (so its tool keeps its name: echo)
 *   (l) + filters  as (c), with the filters on echo: _context injection, argument validation and
 *                  PII redaction of arguments and results
 *   (m) cache hit  as (c), with echo's results cached and every worker sending the same arguments
 *                  each time: after a worker's first call, every call is answered from the cache
 *
 * (c)/(d)/(j) share one processor and Envoy; (e), (f), (g), (h), (i), (l) and (m) each get their own processor and
 * Envoy, configured like (c)'s plus the one feature, so the difference to (c) is that feature.
 * The upstream, the processors, the Envoys and redis-server run as child processes; the load
 * generator (and the JWKS endpoint of (f)) run here. CPU time per process comes from
 * /proc/<pid>/stat, sampled around every measured phase.
 *
 * Two scenarios per target: "loaded" (closed loop at --concurrency, for throughput and latency
 * under load; measured for --duration seconds or --requests calls, split in --rounds rounds whose
 * target order alternates) and "unloaded" (one client, --unloaded calls: latency without queueing).
 *
 * Exit status: 0 when the bench ran (whatever the figures and error counts), 1 when it could not
 * set up (a child did not start, or a target answered no tools/call at all during warm-up), 2 on
 * bad arguments. Missed goals never fail the run: performance is measured, not asserted.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { compileConfig } from '../../src/config/runtime.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { freePorts } from '../support/ports.js';
import { killAllTracked } from '../support/proc.js';
import { machineBusyCpuMs, processCpuMs, startDemoChild, startEnvoyChild, startProcessorChild, type BenchChild, type EnvoyChild } from './children.js';
import { BenchIssuer, makeApiKey, redisCommandCounts, startRedisChild, type RedisCommandCounts } from './features.js';
import { percentile, PROTOCOL_VERSION, TargetClient, type PhaseResult, type TargetSpec } from './loadgen.js';
import { machineInfo, type MachineInfo } from './machine.js';
import { extProcCluster, renderPlainEnvoyBootstrap } from './plain-envoy.js';
import { summariseProfile, type ProfileSummary } from './profile.js';

const GOAL_P50_DELTA_MS = 0.5;
const GOAL_THROUGHPUT_PERCENT = 60;
const SERVER = 'alpha';
const READY_TIMEOUT_MS = 30_000;
const ALL_TARGETS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n'] as const;
type TargetKey = (typeof ALL_TARGETS)[number];
/** Targets served through a gateway (Envoy + ext_proc processor). */
const GATEWAY_TARGETS: readonly TargetKey[] = ['c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'l', 'm', 'n'];
/** Targets compared with (b), Envoy without the processor. */
const VERSUS_PLAIN: readonly TargetKey[] = [...GATEWAY_TARGETS, 'k'];
/** The goal for (j): the catalog answers tools/list at least this many times faster than (c) calls a tool. */
const GOAL_LIST_FACTOR = 5;
/** Targets that are (c) plus one feature; compared with (c). */
const FEATURE_TARGETS: readonly TargetKey[] = ['e', 'f', 'g', 'h', 'l', 'm', 'n'];
/** The rate limit of (g) and (h): the schema's maximum, so it never triggers during a run. */
const NEVER_TRIGGERING_LIMIT = { requests_per_minute: 1_000_000, burst_size: 1_000_000, by: 'client' } as const;

// ------------------------------------------------------------------------------------- options

class UsageError extends Error {}

interface Settings {
  readonly quick: boolean;
  readonly concurrency: number;
  /** Loaded scenario: a fixed number of calls per target, or ... */
  readonly requests: number | null;
  /** ... a fixed time per target (exactly one of the two is set). */
  readonly durationS: number | null;
  readonly warmup: number;
  readonly rounds: number;
  /** Unloaded scenario: calls per target at concurrency 1 (0: skipped). */
  readonly unloaded: number;
  readonly targets: TargetKey[];
  /** Whether --targets/BENCH_TARGETS chose the targets (else a missing redis-server just drops (h)). */
  readonly targetsChosen: boolean;
  readonly jsonPath: string;
  readonly cpuProfDir: string | null;
  readonly keep: boolean;
  /** Extra Envoy runtime keys for both Envoys (experiments only). */
  readonly envoyRuntime: Record<string, string | number | boolean>;
}

const USAGE = `usage: npm run bench [-- options]   (or: node dist/test/bench/run.js [options])

  -c, --concurrency N   loaded: workers (one MCP session each)      [BENCH_CONCURRENCY, default 16; quick 4]
  -d, --duration S      loaded: seconds measured per target         [BENCH_DURATION, default 10]
  -n, --requests N      loaded: calls per target instead of -d      [BENCH_REQUESTS; quick 200]
      --rounds N        loaded: split into N rounds, order          [BENCH_ROUNDS, default 8; quick 1]
                        alternating forward/backward, start shifted
                        every two rounds (unloaded: min(N, 4) rounds)
      --warmup N        unmeasured calls per target first           [BENCH_WARMUP, default 2000; quick 50]
      --unloaded N      unloaded: calls per target, concurrency 1   [BENCH_UNLOADED, default 1500; quick 50; 0 = skip]
      --targets LIST    subset of a,b,c,d,e,f,g,h,i,j,k,l,m,n        [BENCH_TARGETS, default all]
                        (h needs redis-server on PATH; without it the
                        default run leaves (h) out)
      --json PATH       results file                                [BENCH_JSON, default dist/bench-results.json]
      --quick           CI smoke run (a few seconds)                [BENCH_QUICK=1]
      --cpu-prof DIR    run the processors under node --cpu-prof    [BENCH_CPU_PROF]
                        and print their hot spots (slows them down)
      --keep            keep configs and child logs, print the dir  [BENCH_KEEP=1]
      --envoy-runtime K=V[,K=V]
                        experiment: runtime keys for every Envoy    [BENCH_ENVOY_RUNTIME]
                        (flagged in the report; not the shipped config)
  -h, --help
`;

function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

function parseRuntime(spec: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const part of spec.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`envoy-runtime entries are KEY=VALUE, got "${part}"`);
    const v = part.slice(eq + 1);
    out[part.slice(0, eq)] = v === 'true' ? true : v === 'false' ? false : v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
  }
  return out;
}

function parseSettings(argv: string[], env: NodeJS.ProcessEnv): Settings | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      concurrency: { type: 'string', short: 'c' },
      requests: { type: 'string', short: 'n' },
      duration: { type: 'string', short: 'd' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      unloaded: { type: 'string' },
      targets: { type: 'string' },
      json: { type: 'string' },
      quick: { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      keep: { type: 'boolean' },
      'envoy-runtime': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) return null;
  const quick = values.quick === true || truthy(env['BENCH_QUICK']);

  const requestsRaw = values.requests ?? env['BENCH_REQUESTS'];
  const durationRaw = values.duration ?? env['BENCH_DURATION'];
  const hasRequests = requestsRaw !== undefined && requestsRaw !== '';
  const hasDuration = durationRaw !== undefined && durationRaw !== '';
  if (hasRequests && hasDuration) throw new UsageError('give either --requests or --duration, not both');
  let requests: number | null = null;
  let durationS: number | null = null;
  if (hasDuration) {
    durationS = Number(durationRaw.replace(/s$/, ''));
    if (!Number.isFinite(durationS) || durationS <= 0) throw new UsageError(`duration must be a positive number of seconds, got "${durationRaw}"`);
  } else if (hasRequests || quick) {
    requests = int('requests', requestsRaw, 200, 1);
  } else {
    durationS = 10;
  }

  const targets: TargetKey[] = [];
  const targetsRaw = values.targets ?? env['BENCH_TARGETS'];
  const targetsChosen = targetsRaw !== undefined && targetsRaw !== '';
  for (const t of (targetsChosen ? targetsRaw : ALL_TARGETS.join(',')).split(',').map((x) => x.trim().toLowerCase())) {
    if (t === '') continue;
    if (!(ALL_TARGETS as readonly string[]).includes(t)) throw new UsageError(`unknown target "${t}" (choose from ${ALL_TARGETS.join(',')})`);
    if (!targets.includes(t as TargetKey)) targets.push(t as TargetKey);
  }
  if (targets.length === 0) throw new UsageError('no targets selected');
  targets.sort();

  const here = dirname(fileURLToPath(import.meta.url)); // dist/test/bench
  const cpuProf = values['cpu-prof'] ?? env['BENCH_CPU_PROF'];
  return {
    quick,
    concurrency: int('concurrency', values.concurrency ?? env['BENCH_CONCURRENCY'], quick ? 4 : 16, 1),
    requests,
    durationS,
    warmup: int('warmup', values.warmup ?? env['BENCH_WARMUP'], quick ? 50 : 2000, 0),
    rounds: int('rounds', values.rounds ?? env['BENCH_ROUNDS'], quick ? 1 : 8, 1),
    unloaded: int('unloaded', values.unloaded ?? env['BENCH_UNLOADED'], quick ? 50 : 1500, 0),
    targets,
    targetsChosen,
    jsonPath: resolve(values.json ?? env['BENCH_JSON'] ?? join(here, '..', '..', 'bench-results.json')),
    cpuProfDir: cpuProf === undefined || cpuProf === '' ? null : resolve(cpuProf),
    keep: values.keep === true || truthy(env['BENCH_KEEP']),
    envoyRuntime: parseRuntime(values['envoy-runtime'] ?? env['BENCH_ENVOY_RUNTIME'] ?? ''),
  };
}

/** Adds a static runtime layer to a bootstrap (after any layers it already has). */
function withRuntime(yamlText: string, runtime: Record<string, string | number | boolean>): string {
  if (Object.keys(runtime).length === 0) return yamlText;
  const doc = parseYaml(yamlText) as Record<string, unknown>;
  const existing = doc['layered_runtime'] as { layers?: unknown[] } | undefined;
  doc['layered_runtime'] = { layers: [...(existing?.layers ?? []), { name: 'bench_overrides', static_layer: runtime }] };
  return `# + bench runtime overrides\n${toYaml(doc, { aliasDuplicateObjects: false, lineWidth: 0 })}`;
}

// ------------------------------------------------------------------------------------- setup

/** One gateway: a processor and its Envoy, configured as (c) plus at most one feature. */
type Variant = 'gateway' | 'apikey' | 'jwt' | 'limit' | 'redis' | 'json' | 'filters' | 'cache' | 'console';

const VARIANTS: ReadonlyArray<{ readonly variant: Variant; readonly serves: readonly TargetKey[] }> = [
  { variant: 'gateway', serves: ['c', 'd', 'j'] },
  { variant: 'apikey', serves: ['e'] },
  { variant: 'jwt', serves: ['f'] },
  { variant: 'limit', serves: ['g'] },
  { variant: 'redis', serves: ['h'] },
  { variant: 'json', serves: ['i'] },
  { variant: 'filters', serves: ['l'] },
  { variant: 'cache', serves: ['m'] },
  { variant: 'console', serves: ['n'] },
];

interface GatewayStack {
  readonly variant: Variant;
  readonly serves: readonly TargetKey[];
  processor: BenchChild | null;
  envoy: EnvoyChild | null;
  /** The Envoy cluster of the processor (for its connection/reset counters). */
  processorCluster: string | null;
}

interface Stack {
  readonly dir: string;
  upstream: BenchChild | null;
  /** The same demo server answering with application/json, for (i). */
  jsonUpstream: BenchChild | null;
  plainEnvoy: EnvoyChild | null;
  /** Envoy with its native MCP filters, for (k). */
  nativeEnvoy: EnvoyChild | null;
  gateways: GatewayStack[];
  /** redis-server of (h). */
  redis: BenchChild | null;
  redisPort: number;
  /** The JWT issuer of (f): key pair, tokens and the JWKS endpoint (in this process). */
  issuer: BenchIssuer | null;
  readonly specs: Map<TargetKey, TargetSpec>;
}

type Role = 'upstream' | 'processor' | 'envoy' | 'redis';

function children(stack: Stack): Array<{ role: Role; child: BenchChild; serves: readonly TargetKey[] }> {
  const out: Array<{ role: Role; child: BenchChild; serves: readonly TargetKey[] }> = [];
  if (stack.upstream !== null) out.push({ role: 'upstream', child: stack.upstream, serves: ALL_TARGETS.filter((k) => k !== 'i') });
  if (stack.jsonUpstream !== null) out.push({ role: 'upstream', child: stack.jsonUpstream, serves: ['i'] });
  if (stack.plainEnvoy !== null) out.push({ role: 'envoy', child: stack.plainEnvoy, serves: ['b'] });
  if (stack.nativeEnvoy !== null) out.push({ role: 'envoy', child: stack.nativeEnvoy, serves: ['k'] });
  for (const g of stack.gateways) {
    if (g.envoy !== null) out.push({ role: 'envoy', child: g.envoy, serves: g.serves });
    if (g.processor !== null) out.push({ role: 'processor', child: g.processor, serves: g.serves });
  }
  if (stack.redis !== null) out.push({ role: 'redis', child: stack.redis, serves: ['h'] });
  return out;
}

function gatewayOf(stack: Stack, key: TargetKey): GatewayStack | null {
  return stack.gateways.find((g) => g.serves.includes(key)) ?? null;
}

/** Whether redis-server can be started here. */
function haveRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** What the feature variants add to the gateway config. */
interface FeatureInputs {
  readonly apiKeySha256: string;
  /** (n)'s admin key (never also a client key). */
  readonly adminKeySha256: string;
  readonly jwtIssuer: Record<string, unknown> | null;
  readonly redisUrl: string | null;
  readonly jsonUpstreamUrl: string | null;
}

/** The gateway config of one variant: (c)'s config plus that variant's feature. */
function variantConfig(variant: Variant, gateway: Record<string, string>, upstreamUrl: string, f: FeatureInputs): Record<string, unknown> {
  // The gateway's own per-client limit is on by default; one load generator would spend it in a
  // second, so the core path is measured without it and the limit variants carry it (never
  // triggering), like the server limit.
  const ownLimit = variant === 'limit' || variant === 'redis' ? '1000000/min' : 'off';
  const raw: Record<string, unknown> = { gateway: { ...gateway, rate_limit: ownLimit }, servers: { [SERVER]: { url: upstreamUrl } } };
  switch (variant) {
    case 'gateway':
      break;
    case 'apikey':
      raw['auth'] = { api_keys: [{ id: 'bench-client', key_sha256: f.apiKeySha256 }] };
      break;
    case 'jwt':
      if (f.jwtIssuer === null) throw new Error('no JWT issuer');
      raw['auth'] = { jwt: [f.jwtIssuer] };
      break;
    case 'limit':
      raw['rate_limits'] = { [SERVER]: { ...NEVER_TRIGGERING_LIMIT } };
      break;
    case 'redis':
      if (f.redisUrl === null) throw new Error('no redis url');
      raw['rate_limits'] = { [SERVER]: { ...NEVER_TRIGGERING_LIMIT } };
      raw['redis'] = { url: f.redisUrl };
      break;
    case 'json':
      if (f.jsonUpstreamUrl === null) throw new Error('no JSON upstream');
      raw['servers'] = { [SERVER]: { url: f.jsonUpstreamUrl } };
      break;
    case 'filters':
      raw['filters'] = { context: { tools: ['echo'] }, validate: { tools: ['echo'] }, pii: { tools: ['echo'] } };
      break;
    case 'cache':
      raw['cache'] = { 'tools/call': { tools: ['echo'], ttl: 3600, vary: ['arguments'] } };
      break;
    case 'console':
      // (e) with the console on: every decision also goes into its ring.
      raw['auth'] = { api_keys: [{ id: 'bench-client', key_sha256: f.apiKeySha256 }] };
      raw['admin'] = { console: true, api_keys: [{ id: 'bench-admin', key_sha256: f.adminKeySha256 }] };
      break;
  }
  return raw;
}

const TARGET_LABELS: Readonly<Record<TargetKey, string>> = {
  a: 'upstream direct',
  b: 'Envoy, no processor',
  c: 'gateway /mcp (aggregated)',
  d: `gateway /servers/${SERVER}/mcp (passthrough)`,
  e: 'gateway /mcp + API key',
  f: 'gateway /mcp + JWT',
  g: 'gateway /mcp + rate limit (memory)',
  h: 'gateway /mcp + Redis (sessions, limit)',
  i: 'gateway /mcp, upstream answers JSON',
  j: 'gateway /mcp tools/list (catalog)',
  k: "Envoy's native MCP router (C++)",
  l: 'gateway /mcp + filters (context, validate, PII)',
  m: 'gateway /mcp, answer-cache hit',
  n: 'gateway /mcp + API key + admin console on',
};

async function startGateway(
  s: Settings,
  stack: Stack,
  g: GatewayStack,
  raw: Record<string, unknown>,
  log: (m: string) => void,
): Promise<{ yaml: string; separator: string }> {
  const config = parseConfig(raw);
  const gatewayYaml = renderEnvoyBootstrap(config);
  const dir = join(stack.dir, g.variant);
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'gateway.yaml');
  writeFileSync(configPath, toYaml(raw));
  const nodeArgs: string[] = [];
  if (s.cpuProfDir !== null) {
    mkdirSync(s.cpuProfDir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', s.cpuProfDir);
  }
  const gw = config.gateway;
  log(`starting processor "${g.variant}" (child${nodeArgs.length > 0 ? ', --cpu-prof' : ''}) grpc ${String(gw.processor)}, then its Envoy on ${gw.listen}`);
  g.processor = await startProcessorChild({
    configPath,
    adminAddress: gw.admin,
    dir,
    timeoutMs: READY_TIMEOUT_MS,
    nodeArgs,
    name: `processor-${g.variant}`,
    logLevel: process.env['BENCH_LOG_LEVEL'] ?? 'info',
  });
  g.envoy = await startEnvoyChild({ name: `envoy-${g.variant}`, yamlText: withRuntime(gatewayYaml, s.envoyRuntime), dir, timeoutMs: READY_TIMEOUT_MS });
  g.processorCluster = extProcCluster(gatewayYaml);
  return { yaml: gatewayYaml, separator: gw.tool_separator };
}

async function startStack(s: Settings, stack: Stack, log: (m: string) => void): Promise<void> {
  const wantPlain = s.targets.includes('b');
  const variants = VARIANTS.filter((v) => v.serves.some((k) => s.targets.includes(k)));
  const [upPort, plainListen, plainAdmin, redisPort, jsonPort, nativeListen, nativeAdmin] = (await freePorts(7)) as [number, number, number, number, number, number, number];

  log(`starting upstream "${SERVER}" (demo server) on 127.0.0.1:${upPort}`);
  stack.upstream = await startDemoChild({ name: SERVER, port: upPort, dir: stack.dir, timeoutMs: READY_TIMEOUT_MS });
  const upstreamUrl = `http://127.0.0.1:${upPort}/mcp`;
  stack.specs.set('a', { key: 'a', label: TARGET_LABELS.a, url: upstreamUrl, tool: 'echo', expectPrefix: `${SERVER}: ` });
  if (s.targets.includes('i')) {
    log(`starting upstream "${SERVER}" answering JSON on 127.0.0.1:${jsonPort}`);
    stack.jsonUpstream = await startDemoChild({ name: SERVER, port: jsonPort, dir: stack.dir, timeoutMs: READY_TIMEOUT_MS, jsonResponse: true });
  }

  // (e): one key for every worker; (f): one token per worker, verified against a JWKS over HTTP.
  const apiKey = makeApiKey();
  const adminKey = makeApiKey();
  let tokens: string[] = [];
  if (s.targets.includes('f')) {
    stack.issuer = new BenchIssuer();
    await stack.issuer.start();
    tokens = await stack.issuer.tokens(Math.max(1, s.concurrency));
    log(`JWT issuer ${stack.issuer.issuer}: RS256 key, JWKS at ${stack.issuer.jwksUri}, ${tokens.length} token(s)`);
  }
  if (s.targets.includes('h')) {
    log(`starting redis-server on 127.0.0.1:${redisPort}`);
    stack.redis = await startRedisChild({ port: redisPort, dir: stack.dir, timeoutMs: READY_TIMEOUT_MS });
    stack.redisPort = redisPort;
  }
  const features: FeatureInputs = {
    apiKeySha256: apiKey.sha256,
    adminKeySha256: adminKey.sha256,
    jwtIssuer: stack.issuer?.issuerConfig() ?? null,
    redisUrl: stack.redis !== null ? `redis://127.0.0.1:${redisPort}` : null,
    jsonUpstreamUrl: stack.jsonUpstream !== null ? `http://127.0.0.1:${jsonPort}/mcp` : null,
  };

  // The (c) config is rendered even when only (b) runs: (b) is derived from its bootstrap.
  const ports = (await freePorts(5 * VARIANTS.length)).slice();
  const gatewayBlock = (): Record<string, string> => {
    const [listen, grpc, admin, envoyAdmin, internal] = ports.splice(0, 5) as [number, number, number, number, number];
    return {
      listen: `127.0.0.1:${listen}`,
      processor: `127.0.0.1:${grpc}`,
      admin: `127.0.0.1:${admin}`,
      envoy_admin: `127.0.0.1:${envoyAdmin}`,
      internal: `127.0.0.1:${internal}`,
    };
  };
  const raws = new Map<Variant, Record<string, unknown>>(
    VARIANTS.filter((v) => v.variant === 'gateway' || variants.includes(v)).map((v) => [v.variant, variantConfig(v.variant, gatewayBlock(), upstreamUrl, features)]),
  );
  const baseConfig = parseConfig(raws.get('gateway'));
  const baseYaml = renderEnvoyBootstrap(baseConfig);

  const server = compileConfig(baseConfig).servers.get(SERVER);
  if (server === undefined) throw new Error(`compiled config has no server ${SERVER}`);
  const derived = (listenPort: number, adminPort: number, nativeServer?: string): string =>
    renderPlainEnvoyBootstrap({
      gatewayYaml: baseYaml,
      cluster: server.cluster,
      routeName: `${SERVER}_passthrough`,
      path: '/mcp',
      listenPort,
      adminPort,
      ...(nativeServer === undefined ? {} : { nativeServer }),
    });
  if (wantPlain) {
    log(`starting plain Envoy (no ext_proc) on 127.0.0.1:${plainListen}`);
    const yamlText = withRuntime(derived(plainListen, plainAdmin), s.envoyRuntime);
    stack.plainEnvoy = await startEnvoyChild({ name: 'envoy-plain', yamlText, dir: stack.dir, timeoutMs: READY_TIMEOUT_MS });
    stack.specs.set('b', { key: 'b', label: TARGET_LABELS.b, url: `http://127.0.0.1:${plainListen}/mcp`, tool: 'echo', expectPrefix: `${SERVER}: ` });
  }
  if (s.targets.includes('k')) {
    log(`starting Envoy with its native MCP router on 127.0.0.1:${nativeListen}`);
    const yamlText = withRuntime(derived(nativeListen, nativeAdmin, SERVER), s.envoyRuntime);
    stack.nativeEnvoy = await startEnvoyChild({ name: 'envoy-native', yamlText, dir: stack.dir, timeoutMs: READY_TIMEOUT_MS });
    // One server: the native router leaves its names unprefixed.
    stack.specs.set('k', { key: 'k', label: TARGET_LABELS.k, url: `http://127.0.0.1:${nativeListen}/mcp`, tool: 'echo', expectPrefix: `${SERVER}: ` });
  }

  // The gateways start side by side; every one is registered in the stack before it starts, so
  // a failure stops them all.
  const gateways = variants.map((v): GatewayStack => ({ variant: v.variant, serves: v.serves, processor: null, envoy: null, processorCluster: null }));
  stack.gateways.push(...gateways);
  const started = await Promise.allSettled(gateways.map((g) => startGateway(s, stack, g, raws.get(g.variant) ?? {}, log)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;

  const listenOf = (v: Variant): string => String((raws.get(v)?.['gateway'] as Record<string, string>)['listen']);
  const aggregated = (key: TargetKey, v: Variant, headersFor?: (w: number) => Readonly<Record<string, string>>): void => {
    stack.specs.set(key, {
      key,
      label: TARGET_LABELS[key],
      url: `http://${listenOf(v)}/mcp`,
      tool: `${SERVER}${baseConfig.gateway.tool_separator}echo`,
      expectPrefix: `${SERVER}: `,
      ...(headersFor === undefined ? {} : { headersFor }),
    });
  };
  for (const g of gateways) {
    switch (g.variant) {
      case 'gateway':
        aggregated('c', 'gateway');
        stack.specs.set('j', {
          key: 'j',
          label: TARGET_LABELS.j,
          url: `http://${listenOf('gateway')}/mcp`,
          tool: `${SERVER}${baseConfig.gateway.tool_separator}echo`,
          expectPrefix: `${SERVER}: `,
          listExpects: `${SERVER}${baseConfig.gateway.tool_separator}echo`,
        });
        stack.specs.set('d', {
          key: 'd',
          label: TARGET_LABELS.d,
          url: `http://${listenOf('gateway')}/servers/${SERVER}/mcp`,
          tool: 'echo',
          expectPrefix: `${SERVER}: `,
        });
        break;
      case 'apikey': {
        const headers = { authorization: `Bearer ${apiKey.key}` };
        aggregated('e', 'apikey', () => headers);
        break;
      }
      case 'console': {
        const headers = { authorization: `Bearer ${apiKey.key}` };
        aggregated('n', 'console', () => headers);
        consoleAdmin = { url: `http://${String((raws.get('console')?.['gateway'] as Record<string, string>)['admin'])}`, key: adminKey.key };
        break;
      }
      case 'jwt':
        aggregated('f', 'jwt', (w) => ({ authorization: `Bearer ${tokens[w % tokens.length] ?? ''}` }));
        break;
      case 'limit':
        aggregated('g', 'limit');
        break;
      case 'redis':
        aggregated('h', 'redis');
        break;
      case 'json':
        aggregated('i', 'json');
        break;
      case 'filters':
        aggregated('l', 'filters');
        break;
      case 'cache':
        aggregated('m', 'cache');
        stack.specs.set('m', { ...stack.specs.get('m')!, sameArguments: true });
        break;
    }
  }
  for (const key of FEATURE_TARGETS) {
    const spec = stack.specs.get(key);
    if (spec !== undefined) await checkFeature(key, spec);
  }
}

/**
 * Makes sure a feature row measures what it claims: (e) and (f) refuse a caller without
 * credentials (401), (g) and (h) put the limiter's RateLimit-* headers on an allowed response.
 */
async function checkFeature(key: TargetKey, spec: TargetSpec): Promise<void> {
  const res = await fetch(spec.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'mcp-gateway-bench-check', version: '1.0.0' } },
    }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  if (key === 'l' || key === 'm') {
    await (key === 'l' ? checkFilters(spec) : checkCached(spec));
    return;
  }
  if (key === 'n') await checkConsole();
  if (key === 'e' || key === 'f' || key === 'n') {
    if (res.status !== 401) throw new Error(`(${key}) ${spec.label}: a request without credentials got HTTP ${res.status}, not 401; auth is not enforced`);
  } else if (res.status !== 200 || res.headers.get('ratelimit-policy') === null) {
    throw new Error(`(${key}) ${spec.label}: initialize got HTTP ${res.status}${res.status === 200 ? ' without RateLimit-Policy' : ''}; the rate limit is not applied`);
  }
}

/** (l) must really filter: an e-mail address sent to echo comes back redacted. */
async function checkFilters(spec: TargetSpec): Promise<void> {
  const text = await (await checkCalls(spec, 1, 'bench@example.com'))[0]!.text();
  if (!text.includes('[REDACTED:email]')) throw new Error(`(l) ${spec.label}: an e-mail address came back unredacted; the filters are not applied`);
}

/**
 * (m) must really hit: the demo server answers tools/call with an event stream, so a second
 * identical call answered with JSON came from the processor's cache.
 */
/** Where (n)'s console is, and its key (set when (n) is set up). */
let consoleAdmin: { readonly url: string; readonly key: string } | null = null;

/** (n) runs with the console on: its audit ring records the decisions (and answers only its key). */
async function checkConsole(): Promise<void> {
  if (consoleAdmin === null) throw new Error('(n) has no console address');
  const refused = await fetch(`${consoleAdmin.url}/admin/api/audit`);
  await refused.arrayBuffer();
  if (refused.status !== 401) throw new Error(`(n) the console answered ${refused.status} without its key, not 401`);
  const res = await fetch(`${consoleAdmin.url}/admin/api/audit`, { headers: { 'x-admin-key': consoleAdmin.key } });
  const audit = (await res.json()) as { held?: number };
  if (res.status !== 200 || !(Number(audit.held) > 0)) throw new Error(`(n) the console's audit ring is empty (HTTP ${res.status}); the console is not recording`);
}

async function checkCached(spec: TargetSpec): Promise<void> {
  const [first, second] = await checkCalls(spec, 2, 'bench-cache-check');
  const types = [first!.headers.get('content-type') ?? '', second!.headers.get('content-type') ?? ''];
  await Promise.all([first!.text(), second!.text()]);
  if (!types[0]!.startsWith('text/event-stream') || !types[1]!.startsWith('application/json')) {
    throw new Error(`(m) ${spec.label}: two identical calls were answered as ${types.join(' then ')}; the second is not a cache hit`);
  }
}

/** `n` identical tools/call of the target's tool in one new session, one after the other. */
async function checkCalls(spec: TargetSpec, n: number, text: string): Promise<Response[]> {
  const post = async (body: unknown, session: string | null): Promise<Response> =>
    fetch(spec.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': PROTOCOL_VERSION, ...(session === null ? {} : { 'mcp-session-id': session }) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  const init = await post({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'mcp-gateway-bench-check', version: '1.0.0' } } }, null);
  await init.arrayBuffer();
  const session = init.headers.get('mcp-session-id');
  const calls: Response[] = [];
  for (let id = 1; id <= n; id++) {
    const call = await post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: spec.tool, arguments: { text } } }, session);
    // Read before the next call, kept for the caller.
    calls.push(new Response(await call.arrayBuffer(), { status: call.status, headers: call.headers }));
  }
  return calls;
}

// ------------------------------------------------------------------------------------- measuring

interface Accumulated {
  latencies: Float64Array[];
  ok: number;
  errors: number;
  elapsedMs: number;
  errorSamples: string[];
  cpuMs: Record<Role | 'loadgen', number>;
  extProc: { streams: number; sent: number; received: number };
  warmupErrors: number;
  /** CPU time of processes that are not part of the bench, while this target was measured. */
  foreignCpuMs: number;
  /** (f): JWKS fetches while this target was measured. */
  jwksFetches: number;
  /** (h): Redis commands while this target was measured. */
  redis: { scripts: number; commands: number; reads: number };
}

function newAccumulated(): Accumulated {
  return {
    latencies: [],
    ok: 0,
    errors: 0,
    elapsedMs: 0,
    errorSamples: [],
    cpuMs: { loadgen: 0, upstream: 0, envoy: 0, processor: 0, redis: 0 },
    extProc: { streams: 0, sent: 0, received: 0 },
    warmupErrors: 0,
    foreignCpuMs: 0,
    jwksFetches: 0,
    redis: { scripts: 0, commands: 0, reads: 0 },
  };
}

interface TargetResult {
  readonly key: TargetKey;
  readonly label: string;
  readonly url: string;
  readonly tool: string;
  readonly concurrency: number;
  readonly requests: number;
  readonly ok: number;
  readonly errors: number;
  readonly warmupErrors: number;
  readonly elapsedS: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  readonly reqPerS: number;
  /** CPU ms per request (ok + errors) by process; null where the process is not on the path. */
  readonly cpuMsPerRequest: { loadgen: number; upstream: number; envoy: number | null; processor: number | null; redis: number | null };
  /** Envoy → processor gRPC messages per request (null: no ext_proc on the path). */
  readonly extProcMsgsPerRequest: { sent: number; received: number; streams: number } | null;
  /** (f): JWKS fetches during the measured phases of this scenario (null for other targets). */
  readonly jwksFetchesMeasured: number | null;
  /**
   * (h): Redis commands per request: `scripts` are EVALSHA/EVAL calls (one round trip each),
   * `commands` every command Redis ran, those inside the scripts included (null for other targets).
   */
  readonly redisPerRequest: { scripts: number; commands: number; roundTrips: number } | null;
  readonly errorSamples: string[];
  /** CPU used by processes outside the bench while this target ran, as % of all CPUs' time. */
  readonly otherProcessesCpuPercent: number;
}

const EXT_PROC_STATS = 'ext_proc\\.(streams_started|stream_msgs_sent|stream_msgs_received)$';

async function extProcCounters(envoy: EnvoyChild | null): Promise<{ streams: number; sent: number; received: number }> {
  if (envoy === null) return { streams: 0, sent: 0, received: 0 };
  const st = await envoy.stats(EXT_PROC_STATS);
  const sum = (suffix: string): number =>
    Object.entries(st)
      .filter(([k]) => k.endsWith(`ext_proc.${suffix}`))
      .reduce((a, [, v]) => a + v, 0);
  return { streams: sum('streams_started'), sent: sum('stream_msgs_sent'), received: sum('stream_msgs_received') };
}

function cpuSnapshot(stack: Stack): Map<BenchChild, number> {
  const out = new Map<BenchChild, number>();
  for (const { child } of children(stack)) {
    const ms = processCpuMs(child.pid);
    if (ms === null) throw new Error(`${child.name} (pid ${child.pid}) is gone: ${child.exitDescription() ?? 'unknown'}\n${child.logTail()}`);
    out.set(child, ms);
  }
  return out;
}

function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function measurePhase(
  stack: Stack,
  client: TargetClient,
  key: TargetKey,
  limit: { requests?: number; durationMs?: number },
  acc: Accumulated,
): Promise<PhaseResult & { otherPercent: number }> {
  const envoy = gatewayOf(stack, key)?.envoy ?? null;
  const redisPort = key === 'h' && stack.redis !== null ? stack.redisPort : null;
  const redis0: RedisCommandCounts | null = redisPort !== null ? await redisCommandCounts(redisPort) : null;
  const ext0 = envoy !== null ? await extProcCounters(envoy) : null;
  const jwks0 = stack.issuer?.fetches ?? 0;
  const machine0 = machineBusyCpuMs();
  const cpu0 = cpuSnapshot(stack);
  const own0 = ownCpuMs();
  const r = await client.run(limit);
  const own1 = ownCpuMs();
  const cpu1 = cpuSnapshot(stack);
  const machine1 = machineBusyCpuMs();
  const jwks1 = stack.issuer?.fetches ?? 0;
  const ext1 = envoy !== null ? await extProcCounters(envoy) : null;
  const redis1: RedisCommandCounts | null = redisPort !== null ? await redisCommandCounts(redisPort) : null;

  acc.latencies.push(r.latenciesMs);
  acc.ok += r.ok;
  acc.errors += r.errors;
  acc.elapsedMs += r.elapsedMs;
  for (const e of r.errorSamples) if (acc.errorSamples.length < 5 && !acc.errorSamples.includes(e)) acc.errorSamples.push(e);
  acc.cpuMs.loadgen += own1 - own0;
  let ours = own1 - own0;
  for (const { role, child, serves } of children(stack)) {
    const used = (cpu1.get(child) ?? 0) - (cpu0.get(child) ?? 0);
    ours += used;
    // Only processes on this target's path are charged (an idle Envoy's housekeeping is not).
    if (serves.includes(key)) acc.cpuMs[role] += used;
  }
  const foreign = machine0 !== null && machine1 !== null ? Math.max(0, machine1 - machine0 - ours) : 0;
  acc.foreignCpuMs += foreign;
  if (ext0 !== null && ext1 !== null) {
    acc.extProc.streams += ext1.streams - ext0.streams;
    acc.extProc.sent += ext1.sent - ext0.sent;
    acc.extProc.received += ext1.received - ext0.received;
  }
  if (key === 'f') acc.jwksFetches += jwks1 - jwks0;
  if (redis0 !== null && redis1 !== null) {
    acc.redis.scripts += redis1.scripts - redis0.scripts;
    acc.redis.commands += redis1.commands - redis0.commands;
    acc.redis.reads += redis1.reads - redis0.reads;
  }
  return { ...r, otherPercent: r.elapsedMs === 0 ? 0 : (100 * foreign) / (r.elapsedMs * availableParallelism()) };
}

function summarise(key: TargetKey, spec: TargetSpec, concurrency: number, acc: Accumulated): TargetResult {
  const total = acc.latencies.reduce((n, a) => n + a.length, 0);
  const all = new Float64Array(total);
  let off = 0;
  for (const a of acc.latencies) {
    all.set(a, off);
    off += a.length;
  }
  all.sort();
  let sum = 0;
  for (const v of all) sum += v;
  const n = acc.ok + acc.errors;
  const per = (ms: number): number => (n === 0 ? Number.NaN : ms / n);
  const viaProcessor = GATEWAY_TARGETS.includes(key);
  return {
    key,
    label: spec.label,
    url: spec.url,
    tool: spec.tool,
    concurrency,
    requests: n,
    ok: acc.ok,
    errors: acc.errors,
    warmupErrors: acc.warmupErrors,
    elapsedS: acc.elapsedMs / 1000,
    p50Ms: percentile(all, 0.5),
    p90Ms: percentile(all, 0.9),
    p99Ms: percentile(all, 0.99),
    meanMs: total === 0 ? Number.NaN : sum / total,
    maxMs: all[all.length - 1] ?? Number.NaN,
    reqPerS: acc.elapsedMs === 0 ? 0 : (acc.ok * 1000) / acc.elapsedMs,
    cpuMsPerRequest: {
      loadgen: per(acc.cpuMs.loadgen),
      upstream: per(acc.cpuMs.upstream),
      envoy: key !== 'a' ? per(acc.cpuMs.envoy) : null,
      processor: viaProcessor ? per(acc.cpuMs.processor) : null,
      redis: key === 'h' ? per(acc.cpuMs.redis) : null,
    },
    extProcMsgsPerRequest: viaProcessor ? { sent: per(acc.extProc.sent), received: per(acc.extProc.received), streams: per(acc.extProc.streams) } : null,
    jwksFetchesMeasured: key === 'f' ? acc.jwksFetches : null,
    redisPerRequest: key === 'h' ? { scripts: per(acc.redis.scripts), commands: per(acc.redis.commands), roundTrips: per(acc.redis.reads) } : null,
    errorSamples: acc.errorSamples,
    otherProcessesCpuPercent: acc.elapsedMs === 0 ? 0 : (100 * acc.foreignCpuMs) / (acc.elapsedMs * availableParallelism()),
  };
}

/**
 * One scenario over all targets: sessions and warm-up per target, then `rounds` measured rounds,
 * then the clients are closed. Rounds come in pairs: a forward order, then the same order
 * backward (so a steady drift of the machine charges every target alike); each pair starts a few
 * targets further on (so a burst of outside load lands on different targets each time).
 */
async function runScenario(
  name: string,
  stack: Stack,
  targets: readonly TargetKey[],
  opts: { concurrency: number; warmup: number; rounds: number; requests: number | null; durationS: number | null },
  log: (m: string) => void,
  onSetupFailure: () => void,
): Promise<TargetResult[]> {
  const clients = new Map<TargetKey, TargetClient>();
  const acc = new Map<TargetKey, Accumulated>();
  try {
    for (const key of targets) {
      const spec = stack.specs.get(key);
      if (spec === undefined) throw new Error(`target ${key} was not set up`);
      const client = new TargetClient(spec, opts.concurrency);
      clients.set(key, client);
      const a = newAccumulated();
      acc.set(key, a);
      try {
        const retried = await client.open();
        const w = await client.run({ requests: Math.max(opts.warmup, opts.concurrency) });
        if (w.ok === 0) throw new Error(`no tools/call succeeded during warm-up (${w.errors} errors), e.g. ${w.errorSamples[0] ?? '?'}`);
        a.warmupErrors = w.errors + retried.length;
        for (const e of [...retried.map((m) => `session set-up (retried): ${m}`), ...w.errorSamples.map((m) => `warm-up: ${m}`)]) {
          if (a.errorSamples.length < 5 && !a.errorSamples.includes(e)) a.errorSamples.push(e);
        }
        log(
          `${name} (${key}) ${spec.label}: ${opts.concurrency} session(s)${retried.length > 0 ? ` (${retried.length} set-up retries)` : ''}, warm-up ${w.ok} ok / ${w.errors} errors, ${((w.ok * 1000) / w.elapsedMs).toFixed(0)} req/s`,
        );
      } catch (err) {
        onSetupFailure();
        throw new Error(`(${key}) ${spec.label} at ${spec.url}: ${(err as Error).message}`, { cause: err });
      }
    }
    for (let round = 0; round < opts.rounds; round++) {
      const shift = (Math.floor(round / 2) * 3) % targets.length;
      const forward = [...targets.slice(shift), ...targets.slice(0, shift)];
      const order = round % 2 === 0 ? forward : forward.reverse();
      for (const key of order) {
        const client = clients.get(key);
        const a = acc.get(key);
        if (client === undefined || a === undefined) continue;
        const limit =
          opts.durationS !== null
            ? { durationMs: (opts.durationS * 1000) / opts.rounds }
            : { requests: Math.floor((opts.requests ?? 0) / opts.rounds) + (round < (opts.requests ?? 0) % opts.rounds ? 1 : 0) };
        const r = await measurePhase(stack, client, key, limit, a);
        log(
          `${name} round ${round + 1}/${opts.rounds} (${key}): ${r.ok} ok, ${r.errors} errors, ${((r.ok * 1000) / r.elapsedMs).toFixed(0)} req/s, p50 ${f(percentile(r.latenciesMs.slice().sort(), 0.5))} ms, other procs ${f(r.otherPercent, 0)}%`,
        );
      }
    }
    return targets.map((key) => summarise(key, stack.specs.get(key) as TargetSpec, opts.concurrency, acc.get(key) as Accumulated));
  } finally {
    for (const c of clients.values()) c.close();
  }
}

// ------------------------------------------------------------------------------------- report

const f = (v: number | null, digits = 2): string => (v === null ? '—' : Number.isNaN(v) ? 'n/a' : v.toFixed(digits));

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}

interface Ratio {
  readonly target: TargetKey;
  /** Loaded scenario (the goal's definition). */
  readonly p50DeltaMs: number;
  readonly p50Met: boolean;
  /** Unloaded scenario (concurrency 1): the processor's latency without queueing; null if skipped. */
  readonly unloadedP50DeltaMs: number | null;
  readonly unloadedP50Met: boolean | null;
  readonly throughputPercent: number;
  readonly throughputMet: boolean;
}

function ratios(loaded: TargetResult[], unloaded: TargetResult[]): Ratio[] {
  const b = loaded.find((r) => r.key === 'b');
  if (b === undefined) return [];
  const ub = unloaded.find((r) => r.key === 'b');
  return loaded
    .filter((r) => VERSUS_PLAIN.includes(r.key))
    .map((r) => {
      const u = unloaded.find((x) => x.key === r.key);
      const p50DeltaMs = r.p50Ms - b.p50Ms;
      const unloadedP50DeltaMs = u !== undefined && ub !== undefined ? u.p50Ms - ub.p50Ms : null;
      const throughputPercent = (100 * r.reqPerS) / b.reqPerS;
      return {
        target: r.key,
        p50DeltaMs,
        p50Met: p50DeltaMs <= GOAL_P50_DELTA_MS,
        unloadedP50DeltaMs,
        unloadedP50Met: unloadedP50DeltaMs === null ? null : unloadedP50DeltaMs <= GOAL_P50_DELTA_MS,
        throughputPercent,
        throughputMet: throughputPercent >= GOAL_THROUGHPUT_PERCENT,
      };
    });
}

/** What a feature row (e)–(h) adds over (c), the same gateway without the feature. */
interface FeatureDelta {
  readonly target: TargetKey;
  /** Loaded scenario. */
  readonly p50DeltaMs: number;
  readonly processorCpuDeltaMs: number;
  /** Every process on the path (load generator, upstream, Envoy, processor, and Redis for (h)). */
  readonly allCpuDeltaMs: number;
  readonly throughputPercentOfC: number;
  /** Unloaded scenario (null if skipped). */
  readonly unloadedP50DeltaMs: number | null;
  readonly unloadedProcessorCpuDeltaMs: number | null;
}

function allCpu(r: TargetResult): number {
  const c = r.cpuMsPerRequest;
  return c.loadgen + c.upstream + (c.envoy ?? 0) + (c.processor ?? 0) + (c.redis ?? 0);
}

function featureDeltas(loaded: TargetResult[], unloaded: TargetResult[]): FeatureDelta[] {
  const c = loaded.find((r) => r.key === 'c');
  if (c === undefined) return [];
  const uc = unloaded.find((r) => r.key === 'c');
  return loaded
    .filter((r) => FEATURE_TARGETS.includes(r.key))
    .map((r) => {
      const u = unloaded.find((x) => x.key === r.key);
      const both = u !== undefined && uc !== undefined;
      return {
        target: r.key,
        p50DeltaMs: r.p50Ms - c.p50Ms,
        processorCpuDeltaMs: (r.cpuMsPerRequest.processor ?? 0) - (c.cpuMsPerRequest.processor ?? 0),
        allCpuDeltaMs: allCpu(r) - allCpu(c),
        throughputPercentOfC: (100 * r.reqPerS) / c.reqPerS,
        unloadedP50DeltaMs: both ? u.p50Ms - uc.p50Ms : null,
        unloadedProcessorCpuDeltaMs: both ? (u.cpuMsPerRequest.processor ?? 0) - (uc.cpuMsPerRequest.processor ?? 0) : null,
      };
    });
}

interface ResidentSize {
  readonly name: string;
  readonly serves: readonly TargetKey[];
  /** Right after the last measured call. */
  readonly mib: number;
  /** After IDLE_SETTLE_MS without traffic (collectors and allocators have given memory back). */
  readonly idleMib: number | null;
}

/** How long the bench lets the children sit idle before reading their memory a second time. */
const IDLE_SETTLE_MS = 10_000;

function vmRssMiB(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
  return m === null ? null : Number(m[1]) / 1024;
}

/** VmRSS of each child (MiB) at the end of the load, and again once they sat idle for a while. */
async function residentSizes(stack: Stack, log: (m: string) => void): Promise<ResidentSize[]> {
  const busy = children(stack).map(({ child, serves }) => ({ child, serves, mib: vmRssMiB(child.pid) }));
  log(`resident memory read; reading it again after ${IDLE_SETTLE_MS / 1000} s idle`);
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  return busy.flatMap(({ child, serves, mib }) => (mib === null ? [] : [{ name: child.name, serves, mib, idleMib: vmRssMiB(child.pid) }]));
}

interface ProcessorLink {
  /** Which gateway (processor + Envoy) these counters are from. */
  readonly variant: Variant;
  /** Envoy → processor HTTP/2 connections the processor closed while streams were active. */
  readonly connectionsDroppedWithActiveStreams: number;
  /** ext_proc streams Envoy reset (RST_STREAM) instead of closing normally. */
  readonly streamsResetByEnvoy: number;
  readonly streamsTotal: number;
}

async function processorLinks(stack: Stack): Promise<ProcessorLink[]> {
  const out: ProcessorLink[] = [];
  for (const g of stack.gateways) {
    const link = await processorLink(g).catch(() => null);
    if (link !== null) out.push(link);
  }
  return out;
}

async function processorLink(g: GatewayStack): Promise<ProcessorLink | null> {
  const cluster = g.processorCluster;
  if (g.envoy === null || cluster === null) return null;
  const esc = cluster.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const st = await g.envoy.stats(`^cluster\\.${esc}\\.(upstream_cx_destroy_remote_with_active_rq|upstream_rq_tx_reset|upstream_rq_total)$`);
  return {
    variant: g.variant,
    connectionsDroppedWithActiveStreams: st[`cluster.${cluster}.upstream_cx_destroy_remote_with_active_rq`] ?? 0,
    streamsResetByEnvoy: st[`cluster.${cluster}.upstream_rq_tx_reset`] ?? 0,
    streamsTotal: st[`cluster.${cluster}.upstream_rq_total`] ?? 0,
  };
}

/** Extra facts about the feature rows, for the report and the JSON. */
interface FeatureFacts {
  /** (f): JWKS fetches in all, start-up and warm-up included (null without (f)). */
  readonly jwksFetchesTotal: number | null;
  /** (f): CPU ms of one JWT verification that misses the verified-token cache (measured in-process). */
  readonly jwtUncachedVerifyMs: number | null;
}

const signed = (v: number | null, digits = 2, unit = ''): string => (v === null ? '—' : Number.isNaN(v) ? 'n/a' : `${v >= 0 ? '+' : ''}${v.toFixed(digits)}${unit}`);

function report(
  machine: MachineInfo,
  s: Settings,
  loaded: TargetResult[],
  unloaded: TargetResult[],
  rs: Ratio[],
  deltas: FeatureDelta[],
  facts: FeatureFacts,
  links: ProcessorLink[],
  rss: readonly ResidentSize[],
): string {
  const out: string[] = [];
  const loadDesc = s.durationS !== null ? `${s.durationS} s` : `${s.requests} tools/call`;
  out.push(
    `machine: ${machine.cpuModel}, ${machine.cpus} CPUs (${machine.availableParallelism} usable), ${machine.memoryGiB} GiB, Linux ${machine.kernel}`,
    `software: Node ${machine.node}, Envoy ${machine.envoy} (--concurrency 1), gateway ${machine.gitCommit}; load average at start ${machine.loadAverage1m}`,
    `load: closed loop, ${s.concurrency} workers (one MCP session each), ${loadDesc} per target in ${s.rounds} round(s) after ${s.warmup} warm-up calls${
      s.unloaded > 0 ? `; then ${s.unloaded} calls per target from 1 worker` : ''
    }${s.quick ? ' [QUICK]' : ''}${s.cpuProfDir !== null ? ' [PROCESSORS PROFILED: their figures are inflated]' : ''}`,
  );
  if (Object.keys(s.envoyRuntime).length > 0) out.push(`EXPERIMENT: Envoy runtime overrides ${JSON.stringify(s.envoyRuntime)} (not the shipped config)`);
  const mainRows = (rows: TargetResult[]): string[][] =>
    rows.map((r) => [`(${r.key}) ${r.label}`, f(r.p50Ms), f(r.p90Ms), f(r.p99Ms), f(r.reqPerS, 0), String(r.errors), f(r.cpuMsPerRequest.processor, 3)]);
  const mainHeader = ['target', 'p50 ms', 'p90 ms', 'p99 ms', 'req/s', 'errors', 'processor CPU ms/req'];
  out.push('', `tools/call at concurrency ${s.concurrency}:`, '', table(mainHeader, mainRows(loaded)));
  const withRedis = loaded.some((r) => r.cpuMsPerRequest.redis !== null);
  out.push(
    '',
    `CPU ms per request by process at concurrency ${s.concurrency} (user+system, all threads), Envoy→processor ext_proc messages`,
    'per request, and CPU used by processes outside the bench meanwhile (% of all CPUs; high = noisy machine):',
    '',
    table(
      ['target', 'load gen', 'upstream', 'Envoy', 'processor', ...(withRedis ? ['Redis'] : []), 'all', 'ext_proc msgs/req', 'other procs'],
      loaded.map((r) => {
        const c = r.cpuMsPerRequest;
        return [
          `(${r.key}) ${r.label}`,
          f(c.loadgen, 3),
          f(c.upstream, 3),
          f(c.envoy, 3),
          f(c.processor, 3),
          ...(withRedis ? [f(c.redis, 3)] : []),
          f(allCpu(r), 3),
          r.extProcMsgsPerRequest === null ? '—' : f(r.extProcMsgsPerRequest.sent, 2),
          `${f(r.otherProcessesCpuPercent, 0)}%`,
        ];
      }),
    ),
  );
  if (unloaded.length > 0) {
    out.push('', 'tools/call at concurrency 1 (no queueing: the latency one request pays):', '', table(mainHeader, mainRows(unloaded)));
  }
  if (rs.length > 0) {
    out.push('', 'versus (b) Envoy without the processor (the goals are set for (c) and (d)):', '');
    const verdict = (met: boolean | null): string => (met === null ? '—' : met ? 'met' : 'MISSED');
    out.push(
      table(
        [
          'target',
          `p50 − (b) p50, c=${s.concurrency}`,
          `goal ≤ ${GOAL_P50_DELTA_MS} ms`,
          'p50 − (b) p50, c=1',
          `goal ≤ ${GOAL_P50_DELTA_MS} ms`,
          `req/s as % of (b), c=${s.concurrency}`,
          `goal ≥ ${GOAL_THROUGHPUT_PERCENT}%`,
        ],
        rs.map((r) => [
          `(${r.target})`,
          signed(r.p50DeltaMs, 2, ' ms'),
          verdict(r.p50Met),
          signed(r.unloadedP50DeltaMs, 2, ' ms'),
          verdict(r.unloadedP50Met),
          `${f(r.throughputPercent, 0)}%`,
          verdict(r.throughputMet),
        ]),
      ),
    );
  }
  const cl = loaded.find((r) => r.key === 'c');
  const il = loaded.find((r) => r.key === 'i');
  const jl = loaded.find((r) => r.key === 'j');
  if (cl !== undefined && il !== undefined) {
    out.push(
      '',
      `(i) upstream answering JSON, versus (c) answering SSE: ${f((100 * il.reqPerS) / cl.reqPerS, 0)}% of (c)'s req/s, p50 ${signed(il.p50Ms - cl.p50Ms, 2, ' ms')}, ` +
        `processor CPU ${signed((il.cpuMsPerRequest.processor ?? 0) - (cl.cpuMsPerRequest.processor ?? 0), 3)} ms/req, ` +
        `ext_proc msgs/req ${f(il.extProcMsgsPerRequest?.sent ?? null, 2)} vs ${f(cl.extProcMsgsPerRequest?.sent ?? null, 2)}.`,
    );
  }
  if (cl !== undefined && jl !== undefined) {
    const factor = jl.reqPerS / cl.reqPerS;
    out.push(
      '',
      `(j) aggregated tools/list from the catalog: ${f(factor, 2)}× (c)'s tools/call req/s (goal ≥ ${GOAL_LIST_FACTOR}×: ${factor >= GOAL_LIST_FACTOR ? 'met' : 'MISSED'}), ` +
        `processor CPU ${f(jl.cpuMsPerRequest.processor, 3)} ms/req, ext_proc msgs/req ${f(jl.extProcMsgsPerRequest?.sent ?? null, 2)}.`,
    );
  }
  if (deltas.length > 0) {
    out.push(
      '',
      'versus (c), the same gateway without the feature (what the feature adds per request; CPU in ms, "all" = every process',
      'on the path, redis-server included for (h)):',
      '',
      table(
        [
          'target',
          `p50 − (c), c=${s.concurrency}`,
          `processor CPU − (c), c=${s.concurrency}`,
          `all CPU − (c), c=${s.concurrency}`,
          `req/s as % of (c), c=${s.concurrency}`,
          'p50 − (c), c=1',
          'processor CPU − (c), c=1',
        ],
        deltas.map((d) => [
          `(${d.target}) ${TARGET_LABELS[d.target]}`,
          signed(d.p50DeltaMs, 2, ' ms'),
          signed(d.processorCpuDeltaMs, 3),
          signed(d.allCpuDeltaMs, 3),
          `${f(d.throughputPercentOfC, 0)}%`,
          signed(d.unloadedP50DeltaMs, 2, ' ms'),
          signed(d.unloadedProcessorCpuDeltaMs, 3),
        ]),
      ),
    );
  }
  const fl = loaded.find((r) => r.key === 'f');
  if (fl !== undefined) {
    const fu = unloaded.find((r) => r.key === 'f');
    const measured = (fl.jwksFetchesMeasured ?? 0) + (fu?.jwksFetchesMeasured ?? 0);
    out.push(
      '',
      `(f) JWKS fetches: ${measured} during the measured phases (${measured <= 1 ? 'keys are not fetched per request' : 'MORE THAN ONE: keys are being re-fetched'}), ` +
        `${facts.jwksFetchesTotal ?? '?'} in all (start-up and warm-up included).`,
      `    One verification that misses the verified-token cache (RS256, the gateway's JwtVerifier in this process): ${f(facts.jwtUncachedVerifyMs, 3)} ms CPU.`,
    );
  }
  const hl = loaded.find((r) => r.key === 'h');
  if (hl !== undefined && hl.redisPerRequest !== null) {
    const hu = unloaded.find((r) => r.key === 'h');
    out.push(
      '',
      `(h) Redis per request at c=${s.concurrency}: ${f(hl.redisPerRequest.roundTrips, 2)} round trips (socket reads), ${f(hl.redisPerRequest.scripts, 2)} scripts (EVALSHA), ` +
        `${f(hl.redisPerRequest.commands, 2)} commands in all; redis-server CPU ${f(hl.cpuMsPerRequest.redis, 3)} ms/req` +
        (hu?.cpuMsPerRequest.redis !== undefined && hu.cpuMsPerRequest.redis !== null ? ` (c=1: ${f(hu.cpuMsPerRequest.redis, 3)} ms/req)` : '') +
        '.',
      // Under load the client pipelines across requests too; one request's own count shows at c=1.
      ...(hu?.redisPerRequest ? [`    At c=1 (one request at a time): ${f(hu.redisPerRequest.roundTrips, 2)} round trips per request.`] : []),
    );
  }
  if (links.length > 0) {
    const total = (k: 'streamsTotal' | 'streamsResetByEnvoy' | 'connectionsDroppedWithActiveStreams'): number => links.reduce((a, l) => a + l[k], 0);
    out.push(
      '',
      `Envoy→processor link (${links.length} gateway(s)): ${total('streamsTotal')} ext_proc streams, ${total('streamsResetByEnvoy')} reset by Envoy at the end of their request, ` +
        `${total('connectionsDroppedWithActiveStreams')} HTTP/2 connection(s) dropped by a processor with streams in flight`,
    );
  }
  if (rss.length > 0) {
    out.push(
      '',
      'resident memory (VmRSS) of every process:',
      '',
      table(
        ['process', 'serves', 'RSS MiB at end of load', `after ${IDLE_SETTLE_MS / 1000} s idle`],
        rss.map((r) => [r.name, r.serves.map((k) => `(${k})`).join(''), f(r.mib, 0), f(r.idleMib, 0)]),
      ),
    );
  }
  const noisy = [...loaded, ...unloaded].filter((r) => r.otherProcessesCpuPercent >= 10);
  if (noisy.length > 0) {
    out.push('', `WARNING: other processes used ≥10% of the machine while measuring ${ALL_TARGETS.filter((k) => noisy.some((r) => r.key === k)).map((k) => `(${k})`).join(', ')}; figures are skewed, rerun on a quiet machine.`);
  }
  for (const [name, rows] of [
    ['concurrency ' + String(s.concurrency), loaded],
    ['concurrency 1', unloaded],
  ] as const) {
    for (const r of rows) {
      if (r.errors > 0 || r.warmupErrors > 0) {
        out.push('', `(${r.key}) ${name}: ${r.errors} errors measured (+${r.warmupErrors} in set-up/warm-up), e.g.:`, ...r.errorSamples.map((e) => `    ${e}`));
      }
    }
  }
  return out.join('\n');
}

function profileReport(variant: Variant, p: ProfileSummary): string {
  const lines = [`processor "${variant}" CPU profile ${p.file}: ${f(p.totalMs - p.idleMs, 0)} ms busy of ${f(p.totalMs, 0)} ms sampled`, '', 'self time by module:'];
  for (const m of p.modules) lines.push(`  ${f(m.percent, 1).padStart(5)}%  ${f(m.selfMs, 0).padStart(6)} ms  ${m.name}`);
  lines.push('', 'self time by function:');
  for (const m of p.functions) lines.push(`  ${f(m.percent, 1).padStart(5)}%  ${f(m.selfMs, 0).padStart(6)} ms  ${m.name}`);
  return lines.join('\n');
}

// ------------------------------------------------------------------------------------- main

async function stopStack(stack: Stack): Promise<void> {
  // Envoys first (no more traffic for the processors), then the processors (gracefully, so a
  // --cpu-prof profile gets written), then Redis, the upstream and the JWKS endpoint.
  await Promise.all([...stack.gateways.map((g) => g.envoy?.stop()), stack.plainEnvoy?.stop(), stack.nativeEnvoy?.stop()]);
  await Promise.all(stack.gateways.map((g) => g.processor?.stop(10_000)));
  await Promise.all([stack.redis?.stop(), stack.upstream?.stop(), stack.jsonUpstream?.stop(), stack.issuer?.stop()]);
}

async function main(): Promise<number> {
  const startedAt = new Date();
  const t0 = process.hrtime.bigint();
  const log = (m: string): void => {
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stderr.write(`[bench ${secs.toFixed(1).padStart(5)}s] ${m}\n`);
  };
  let parsed: Settings | null;
  try {
    parsed = parseSettings(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  let s = parsed;
  if (s.targets.includes('h') && !haveRedisServer()) {
    if (s.targetsChosen) {
      process.stderr.write('bench: target (h) needs redis-server on PATH (scripts/ensure-tools.sh installs it)\n');
      return 1;
    }
    process.stderr.write('bench: redis-server is not on PATH; leaving out (h) (scripts/ensure-tools.sh installs it)\n');
    s = { ...s, targets: s.targets.filter((k) => k !== 'h') };
  }

  const stack: Stack = {
    dir: mkdtempSync(join(tmpdir(), 'mcp-bench-')),
    upstream: null,
    jsonUpstream: null,
    plainEnvoy: null,
    nativeEnvoy: null,
    gateways: [],
    redis: null,
    redisPort: 0,
    issuer: null,
    specs: new Map(),
  };
  let setupFailed = false;
  let keepDir = s.keep;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, stopping children\n`);
    killAllTracked();
    if (!s.keep) rmSync(stack.dir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const machine = machineInfo();
  try {
    log(`${machine.cpuModel}, ${machine.cpus} CPUs, Node ${machine.node}, Envoy ${machine.envoy}; temp dir ${stack.dir}`);
    try {
      await startStack(s, stack, log);
    } catch (err) {
      setupFailed = true;
      throw err;
    }
    const markSetupFailed = (): void => {
      setupFailed = true;
    };

    const loaded = await runScenario(
      `c=${s.concurrency}`,
      stack,
      s.targets,
      { concurrency: s.concurrency, warmup: s.warmup, rounds: s.rounds, requests: s.requests, durationS: s.durationS },
      log,
      markSetupFailed,
    );
    const unloaded =
      s.unloaded > 0
        ? await runScenario(
            'c=1',
            stack,
            s.targets,
            { concurrency: 1, warmup: Math.min(200, s.warmup), rounds: Math.min(4, s.rounds), requests: s.unloaded, durationS: null },
            log,
            markSetupFailed,
          )
        : [];
    const rs = ratios(loaded, unloaded);
    const deltas = featureDeltas(loaded, unloaded);
    const links = await processorLinks(stack);
    const rss = await residentSizes(stack, log);
    const jwksFetchesTotal = stack.issuer?.fetches ?? null;

    log('stopping children');
    await stopStack(stack);
    // Measured once the children are gone, so it competes with nothing.
    const jwtUncachedVerifyMs = stack.issuer !== null ? await stack.issuer.uncachedVerifyMs() : null;
    const facts: FeatureFacts = { jwksFetchesTotal, jwtUncachedVerifyMs };
    const profiles: Array<{ variant: Variant; profile: ProfileSummary }> = [];
    if (s.cpuProfDir !== null) {
      const files = readdirSync(s.cpuProfDir);
      for (const g of stack.gateways) {
        if (g.processor === null) continue;
        const pid = g.processor.pid;
        const file = files.find((n) => n.endsWith('.cpuprofile') && n.includes(`.${pid}.`));
        if (file === undefined) log(`no .cpuprofile for pid ${pid} (processor "${g.variant}") in ${s.cpuProfDir}`);
        else profiles.push({ variant: g.variant, profile: summariseProfile(join(s.cpuProfDir, file)) });
      }
    }
    const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;

    process.stdout.write(`\n${report(machine, s, loaded, unloaded, rs, deltas, facts, links, rss)}\n`);
    for (const p of profiles) process.stdout.write(`\n${profileReport(p.variant, p.profile)}\n`);
    process.stdout.write(`\nbench took ${elapsedS.toFixed(1)} s (without the build)\n`);

    const json = {
      version: 2,
      startedAt: startedAt.toISOString(),
      elapsedS,
      machine,
      settings: { ...s, jsonPath: undefined },
      goals: { p50DeltaMs: GOAL_P50_DELTA_MS, throughputPercent: GOAL_THROUGHPUT_PERCENT },
      loaded,
      unloaded,
      versusPlainEnvoy: rs,
      versusGateway: deltas,
      features: {
        apiKey: s.targets.includes('e') ? { keys: 1, header: 'authorization: Bearer <key>' } : null,
        jwt: s.targets.includes('f')
          ? {
              algorithm: 'RS256',
              tokens: Math.max(1, s.concurrency),
              jwksFetchesTotal,
              jwksFetchesMeasured: [...loaded, ...unloaded].reduce((n, r) => n + (r.jwksFetchesMeasured ?? 0), 0),
              uncachedVerifyMs: jwtUncachedVerifyMs,
            }
          : null,
        rateLimit: s.targets.includes('g') || s.targets.includes('h') ? { [SERVER]: NEVER_TRIGGERING_LIMIT } : null,
      },
      processorLinks: links,
      residentMiB: rss,
      processorProfiles: profiles,
    };
    mkdirSync(dirname(s.jsonPath), { recursive: true });
    writeFileSync(
      s.jsonPath,
      `${JSON.stringify(json, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2)}\n`,
    );
    process.stdout.write(`results written to ${s.jsonPath}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`\nbench: ${setupFailed ? 'setup failed: ' : ''}${(err as Error).stack ?? String(err)}\n`);
    for (const { child } of children(stack)) {
      const exited = child.exitDescription();
      if (exited !== undefined) process.stderr.write(`--- ${child.name} ${exited}; log ${child.logPath}:\n${child.logTail(2_000)}\n`);
    }
    process.stderr.write(`configs and child logs kept in ${stack.dir}\n`);
    keepDir = true;
    await stopStack(stack).catch(() => undefined);
    return 1;
  } finally {
    if (keepDir) {
      if (s.keep) process.stderr.write(`configs and child logs kept in ${stack.dir}\n`);
    } else {
      rmSync(stack.dir, { recursive: true, force: true });
    }
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    killAllTracked();
    process.exitCode = 1;
  },
);
