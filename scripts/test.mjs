#!/usr/bin/env node
// The test entry point (`npm test` runs `npm run build` first, then this).
//
//   node scripts/test.mjs [FILTER ...] [--node-test-flag ...]
//
// 1. unit tests:        node --test dist/test/unit/**/*.test.js        (parallel)
// 2. integration tests: node --test dist/test/integration/**/*.test.js (--test-concurrency=1:
//                       each file spawns Envoy and friends)
// 3. schema check:      node dist/scripts/gen-schema.js --check        (if that script exists)
// 4. bench smoke run:   BENCH_QUICK=1 node dist/test/bench/run.js      (setup failures only)
//
// FILTERs are substrings of the test file path (e.g. `integration`, `session`); arguments that
// start with `--` are passed to `node --test` (e.g. `--test-name-pattern=tools`).
// Only compiled tests whose .ts source still exists are run, so stale files left in dist/ by a
// deleted test never run. Per-test timeout: TEST_TIMEOUT_MS (default 30 s unit, 120 s integration).
//
// The last line printed is always `N passed, N failed` (plus `, N skipped` when some were).
// Exit status is non-zero if anything failed.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const REQUIRED_NODE_MAJOR = 24;

// --- make sure we run under the pinned Node (node_modules/.bin/node, from the `node` devDependency)
const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_NODE_MAJOR) {
  const pinned = join(root, 'node_modules', '.bin', 'node');
  if (existsSync(pinned) && process.env.MCP_GATEWAY_TEST_REEXEC !== '1') {
    console.error(`scripts/test.mjs: Node ${process.versions.node} is too old; re-running under ${pinned}`);
    const r = spawnSync(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, MCP_GATEWAY_TEST_REEXEC: '1' },
    });
    process.exit(r.status ?? 1);
  }
  console.error(`scripts/test.mjs: needs Node >= ${REQUIRED_NODE_MAJOR}, this is ${process.versions.node}; run \`npm ci\` (it installs the pinned Node) and use \`npm test\``);
  process.exit(1);
}

// --- arguments
const filters = [];
const nodeTestFlags = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--')) nodeTestFlags.push(arg);
  else filters.push(arg);
}

/** Compiled test files under dist/<dir> whose TypeScript source still exists, sorted. */
function findTests(dir) {
  const distDir = join(root, 'dist', dir);
  if (!existsSync(distDir)) return [];
  const out = [];
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile() && entry.name.endsWith('.test.js')) {
        const rel = relative(join(root, 'dist'), p);
        const source = join(root, rel.replace(/\.js$/, '.ts'));
        if (!existsSync(source)) continue; // stale output of a deleted test
        if (filters.length > 0 && !filters.some((f) => rel.includes(f) || rel.split(sep).join('/').includes(f))) continue;
        out.push(relative(root, p));
      }
    }
  };
  walk(distDir);
  return out.sort();
}

const totals = { passed: 0, failed: 0, skipped: 0 };
const problems = [];
const tapDir = mkdtempSync(join(tmpdir(), 'mcp-gateway-test-'));

function readTapSummary(file) {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8');
  const get = (key) => {
    const all = [...text.matchAll(new RegExp(`^# ${key} (\\d+)$`, 'gm'))];
    const last = all.at(-1);
    return last === undefined ? undefined : Number(last[1]);
  };
  const pass = get('pass');
  if (pass === undefined) return undefined;
  return {
    pass,
    fail: (get('fail') ?? 0) + (get('cancelled') ?? 0),
    skipped: (get('skipped') ?? 0) + (get('todo') ?? 0),
  };
}

function runSuite(name, files, extraFlags, timeoutMs) {
  if (files.length === 0) {
    console.log(`\n=== ${name}: no test files, skipped`);
    return;
  }
  console.log(`\n=== ${name}: ${files.length} file(s)`);
  const tapFile = join(tapDir, `${name}.tap`);
  const args = [
    '--enable-source-maps',
    '--test',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    `--test-timeout=${timeoutMs}`,
    ...extraFlags,
    ...nodeTestFlags,
    ...files,
  ];
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: process.env });
  const summary = readTapSummary(tapFile);
  if (summary === undefined) {
    totals.failed += 1;
    problems.push(`${name}: node --test produced no summary (exit ${r.status ?? r.signal})`);
    return;
  }
  totals.passed += summary.pass;
  totals.failed += summary.fail;
  totals.skipped += summary.skipped;
  if (r.status !== 0 && summary.fail === 0) {
    totals.failed += 1;
    problems.push(`${name}: node --test exited with ${r.status ?? r.signal} although no test failed`);
  } else if (summary.fail > 0) {
    problems.push(`${name}: ${summary.fail} failed`);
  }
}

const envTimeout = Number(process.env.TEST_TIMEOUT_MS ?? '');
const timeout = (fallback) => (Number.isFinite(envTimeout) && envTimeout > 0 ? envTimeout : fallback);

try {
  runSuite('unit', findTests(join('test', 'unit')), [], timeout(30_000));
  runSuite('integration', findTests(join('test', 'integration')), ['--test-concurrency=1'], timeout(120_000));

  const genSchema = join(root, 'dist', 'scripts', 'gen-schema.js');
  if (filters.length === 0 && existsSync(genSchema)) {
    console.log('\n=== schema check: node dist/scripts/gen-schema.js --check');
    const r = spawnSync(process.execPath, [genSchema, '--check'], { cwd: root, stdio: 'inherit' });
    if (r.status === 0) {
      totals.passed += 1;
      console.log('schema check passed');
    } else {
      totals.failed += 1;
      problems.push('schema: deploy/config.schema.json is out of date (run `npm run gen:schema`)');
    }
  }

  // The benchmark is measured, never asserted: one quick run only proves it still sets up and
  // drives every target, so it cannot rot between the runs that produce BENCHMARKS.md.
  const bench = join(root, 'dist', 'test', 'bench', 'run.js');
  if (filters.length === 0 && existsSync(bench)) {
    console.log('\n=== bench smoke run: BENCH_QUICK=1 node dist/test/bench/run.js');
    const r = spawnSync(process.execPath, [bench], { cwd: root, stdio: 'inherit', env: { ...process.env, BENCH_QUICK: '1' } });
    if (r.status === 0) {
      totals.passed += 1;
      console.log('bench smoke run passed');
    } else {
      totals.failed += 1;
      problems.push('bench: the quick benchmark run could not set up or drive a target');
    }
  }
} finally {
  rmSync(tapDir, { recursive: true, force: true });
}

console.log('');
const shots = join(root, 'test-results', 'admin-console');
if (existsSync(shots)) console.log(`admin console screenshots for review: ${relative(process.cwd(), shots) || '.'}/ (${readdirSync(shots).length} pages)`);
for (const p of problems) console.log(`FAILED ${p}`);
console.log(`${totals.passed} passed, ${totals.failed} failed${totals.skipped > 0 ? `, ${totals.skipped} skipped` : ''}`);
process.exit(totals.failed > 0 ? 1 : 0);
