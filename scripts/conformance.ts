/**
 * Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`,
 * server mode) against a URL and summarises it per scenario.
 *
 *   node dist/scripts/conformance.js --url http://127.0.0.1:3100/mcp
 *     [--suite active|all|pending] [--scenario NAME]... [--out DIR] [--spec-version V]
 *     [--release stable|next]  (the pinned 0.1.x suite, or the 0.2.x one that adds 2026-07-28)
 *     [--expected-failures FILE] [--verbose] [--json]
 *
 * Exits 0 when every scenario passed (or failed only as listed in the
 * expected-failures file), 1 otherwise, 2 on bad usage or when the suite could
 * not run at all.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';

/**
 * The suite's release lines the project pins: `stable` (0.1.x, the session-based revisions) and
 * `next` (0.2.x, which adds 2026-07-28; installed under an npm alias beside the other).
 */
export type SuiteRelease = 'stable' | 'next';

const SUITE_PACKAGES: Readonly<Record<SuiteRelease, string>> = {
  stable: '@modelcontextprotocol/conformance',
  next: '@modelcontextprotocol/conformance-next',
};

/** Options for {@link runConformance}. */
export interface ConformanceRunOptions {
  /** Which pinned release of the suite runs; defaults to `stable`. */
  release?: SuiteRelease;
  /** Suite to run when `scenarios` is not given; defaults to `active`. */
  suite?: 'active' | 'all' | 'pending';
  /** Run only these scenarios (one suite process each), instead of a suite. */
  scenarios?: string[];
  /** Keep the suite's per-scenario `checks.json` here; otherwise a temp dir is used and removed. */
  outDir?: string;
  /** Only scenarios for this spec version (the suite's `--spec-version`). */
  specVersion?: string;
  /** Kill the suite after this long; defaults to 5 minutes. */
  timeoutMs?: number;
  /** Receives the suite's raw stdout/stderr as it runs (e.g. `(s) => process.stderr.write(s)`). */
  onOutput?: (chunk: string) => void;
}

/** One check the suite made inside a scenario. */
export interface ConformanceCheck {
  id: string;
  name: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | string;
  description?: string;
  errorMessage?: string;
}

/** Outcome of one scenario. */
export interface ConformanceScenarioResult {
  scenario: string;
  /** True when no check failed (warnings do not fail a scenario, as in the suite's own exit code). */
  passed: boolean;
  checks: ConformanceCheck[];
}

/** Outcome of a run. */
export interface ConformanceRunResult {
  /** Scenarios with no failed check, sorted. */
  passed: string[];
  /** Scenarios with at least one failed check, sorted. */
  failed: string[];
  /** Scenarios (passed or not) that raised warnings, sorted. */
  warned: string[];
  /** Per-scenario detail, in the order the suite ran them. */
  scenarios: ConformanceScenarioResult[];
  /** Wall-clock time of the whole run. */
  durationMs: number;
}

interface ConformancePaths {
  cli: string;
  node: string;
  binDir: string;
}

const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/;
const SUMMARY_LINE = /^([✓✗]) (\S+): (\d+) passed, (\d+) failed$/u;

/** Locates the suite's CLI and a Node new enough for it (it needs >= 22). */
function resolvePaths(release: SuiteRelease): ConformancePaths {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve(`${SUITE_PACKAGES[release]}/package.json`);
  const pkgDir = dirname(pkgJson);
  const binDir = resolve(pkgDir, '..', '..', '.bin');
  const major = Number(process.versions.node.split('.')[0]);
  const pinned = join(binDir, process.platform === 'win32' ? 'node.exe' : 'node');
  const node = major >= 22 || !existsSync(pinned) ? process.execPath : pinned;
  return { cli: join(pkgDir, 'dist', 'index.js'), node, binDir };
}

function runSuiteProcess(
  paths: ConformancePaths,
  args: string[],
  timeoutMs: number,
  onOutput: ((chunk: string) => void) | undefined,
): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(paths.node, [paths.cli, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: `${paths.binDir}${delimiter}${process.env['PATH'] ?? ''}`, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      onOutput?.(s);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      onOutput?.(s);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, timedOut });
    });
  });
}

/** Reads the `checks.json` of every result dir not in `before`. */
async function readResults(dir: string, before: Set<string>): Promise<Map<string, ConformanceCheck[]>> {
  const results = new Map<string, ConformanceCheck[]>();
  const entries = (await readdir(dir)).filter((e) => !before.has(e)).sort();
  for (const entry of entries) {
    const scenario = RESULT_DIR.exec(entry)?.[1];
    const file = join(dir, entry, 'checks.json');
    if (scenario === undefined || !existsSync(file)) continue;
    results.set(scenario, JSON.parse(await readFile(file, 'utf8')) as ConformanceCheck[]);
  }
  return results;
}

/**
 * Runs the conformance suite against `url` and reports which scenarios passed.
 *
 * Results come from the suite's own `checks.json` files; a scenario that
 * crashed before writing one still shows up, failed, from the summary lines.
 * Rejects when the suite produced no result at all (bad URL, crash, timeout).
 */
export async function runConformance(url: string, opts: ConformanceRunOptions = {}): Promise<ConformanceRunResult> {
  const started = Date.now();
  const paths = resolvePaths(opts.release ?? 'stable');
  const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
  const keep = opts.outDir !== undefined;
  const outDir = opts.outDir ?? (await mkdtemp(join(tmpdir(), 'mcp-conformance-')));
  await mkdir(outDir, { recursive: true });
  const before = new Set(await readdir(outDir));
  const common = ['server', '--url', url, '--output-dir', outDir];
  if (opts.specVersion !== undefined) common.push('--spec-version', opts.specVersion);
  const runs = opts.scenarios?.length
    ? opts.scenarios.map((s) => [...common, '--scenario', s])
    : [[...common, '--suite', opts.suite ?? 'active']];

  try {
    const summary = new Map<string, boolean>();
    const order: string[] = [];
    const diagnostics: string[] = [];
    for (const args of runs) {
      const remaining = timeoutMs - (Date.now() - started);
      const out = await runSuiteProcess(paths, args, Math.max(remaining, 1), opts.onOutput);
      if (out.timedOut) throw new Error(`conformance suite timed out after ${timeoutMs} ms`);
      for (const line of out.stdout.split('\n')) {
        const m = SUMMARY_LINE.exec(line.trim());
        if (m?.[2] !== undefined) summary.set(m[2], m[1] === '✓');
        const running = /^=== Running scenario: (\S+) ===$/.exec(line.trim())?.[1];
        if (running !== undefined) order.push(running);
      }
      const scenarioArg = args[args.indexOf('--scenario') + 1];
      if (args.includes('--scenario') && scenarioArg !== undefined) order.push(scenarioArg);
      diagnostics.push(`exit ${String(out.code)}: ${(out.stderr || out.stdout).trim().split('\n').slice(-5).join(' | ')}`);
    }

    const checks = await readResults(outDir, before);
    const names = [...new Set([...order, ...checks.keys(), ...summary.keys()])];
    if (names.length === 0) {
      throw new Error(`conformance suite produced no results (${diagnostics.join('; ')})`);
    }
    const scenarios: ConformanceScenarioResult[] = names.map((scenario) => {
      const list = checks.get(scenario);
      if (list === undefined) {
        return {
          scenario,
          passed: false,
          checks: [{ id: scenario, name: scenario, status: 'FAILURE', errorMessage: 'scenario left no checks.json' }],
        };
      }
      return { scenario, passed: !list.some((c) => c.status === 'FAILURE'), checks: list };
    });
    return {
      passed: scenarios.filter((s) => s.passed).map((s) => s.scenario).sort(),
      failed: scenarios.filter((s) => !s.passed).map((s) => s.scenario).sort(),
      warned: scenarios.filter((s) => s.checks.some((c) => c.status === 'WARNING')).map((s) => s.scenario).sort(),
      scenarios,
      durationMs: Date.now() - started,
    };
  } finally {
    if (!keep) await rm(outDir, { recursive: true, force: true });
  }
}

/**
 * Reads the suite's expected-failures YAML (`server: [scenario, ...]`), or another list of
 * scenario names in it (`section`).
 */
export async function readExpectedFailures(file: string, section = 'server'): Promise<string[]> {
  const doc: unknown = parseYaml(await readFile(file, 'utf8'));
  if (doc === null || doc === undefined) return [];
  const list = (doc as Record<string, unknown>)[section];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new Error(`${file}: "${section}" must be a list of scenario names`);
  return list.map(String);
}

function formatReport(url: string, result: ConformanceRunResult): string {
  const lines = [`conformance against ${url}: ${result.scenarios.length} scenarios in ${(result.durationMs / 1000).toFixed(1)}s`];
  for (const s of result.scenarios) {
    const ok = s.checks.filter((c) => c.status === 'SUCCESS').length;
    const graded = s.checks.filter((c) => c.status === 'SUCCESS' || c.status === 'FAILURE').length;
    const warn = s.checks.filter((c) => c.status === 'WARNING').length;
    lines.push(`  ${s.passed ? 'PASS' : 'FAIL'} ${s.scenario} (${ok}/${graded} checks${warn ? `, ${warn} warnings` : ''})`);
    for (const c of s.checks) {
      if (c.status === 'FAILURE' || c.status === 'WARNING') {
        lines.push(`       ${c.status === 'FAILURE' ? 'failed' : 'warning'}: ${c.name}${c.errorMessage ? `: ${c.errorMessage}` : ''}`);
      }
    }
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      suite: { type: 'string', default: 'active' },
      scenario: { type: 'string', multiple: true },
      out: { type: 'string' },
      'spec-version': { type: 'string' },
      release: { type: 'string', default: 'stable' },
      'expected-failures': { type: 'string' },
      verbose: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const suite = values.suite;
  const release = values.release;
  if (!values.url || (suite !== 'active' && suite !== 'all' && suite !== 'pending') || (release !== 'stable' && release !== 'next')) {
    console.error(
      'usage: conformance.js --url URL [--suite active|all|pending] [--scenario NAME]... [--out DIR]\n' +
        '                      [--spec-version V] [--release stable|next] [--expected-failures FILE] [--verbose] [--json]',
    );
    return 2;
  }
  const result = await runConformance(values.url, {
    suite,
    release,
    ...(values.scenario ? { scenarios: values.scenario } : {}),
    ...(values.out !== undefined ? { outDir: values.out } : {}),
    ...(values['spec-version'] !== undefined ? { specVersion: values['spec-version'] } : {}),
    ...(values.verbose ? { onOutput: (s: string) => void process.stderr.write(s) } : {}),
  });
  // With --json, stdout carries only the JSON document; the verdict goes to stderr.
  const say = values.json ? console.error : console.log;
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else console.log(formatReport(values.url, result));

  const expected = values['expected-failures'] ? await readExpectedFailures(values['expected-failures']) : [];
  const unexpected = result.failed.filter((s) => !expected.includes(s));
  // Same rule as the suite's baseline: an entry that now passes is stale and must go.
  const stale = expected.filter((s) => result.passed.includes(s));
  if (expected.length > 0) {
    const known = result.failed.filter((s) => expected.includes(s));
    if (known.length) say(`expected failures: ${known.join(', ')}`);
    if (stale.length) say(`stale expected failures (now passing, remove them): ${stale.join(', ')}`);
  }
  if (unexpected.length) say(`unexpected failures: ${unexpected.join(', ')}`);
  say(`${result.passed.length} passed, ${result.failed.length} failed`);
  return unexpected.length > 0 || stale.length > 0 ? 1 : 0;
}

const invokedAs = process.argv[1];
if (invokedAs !== undefined && import.meta.url === pathToFileURL(resolve(invokedAs)).href) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exitCode = 2;
    },
  );
}
