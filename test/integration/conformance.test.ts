/**
 * The official MCP conformance suite (server mode) against the fixtures, directly and through the
 * gateway: its pinned 0.1.x release on the active suite, and its 0.2.x release per revision,
 * each directly, through the server's passthrough endpoint and through `/mcp` with that server
 * alone (`prefix: never`, so the scenarios find the fixture's own tool names and URIs). Both
 * endpoints must pass exactly what the fixture passes. Every run's counts are printed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runConformance, type ConformanceRunResult, type SuiteRelease } from '../../scripts/conformance.js';
import { startModernConformanceServer } from '../fixtures/mcp-servers/conformance-modern-server.js';
import { startConformanceServer } from '../fixtures/mcp-servers/conformance-server.js';
import { startStack, type Stack } from '../support/stack.js';

function failures(r: ConformanceRunResult): string {
  return r.scenarios
    .filter((s) => !s.passed)
    .map((s) => `${s.scenario}: ${s.checks.filter((c) => c.status === 'FAILURE').map((c) => c.errorMessage ?? c.name).join('; ')}`)
    .join('\n');
}

function counts(label: string, r: ConformanceRunResult): string {
  return `${label}: ${r.passed.length}/${r.scenarios.length} scenarios passed in ${(r.durationMs / 1000).toFixed(1)} s`;
}

interface Target {
  readonly release: SuiteRelease;
  readonly specVersion?: string;
  /** `all` includes the scenarios the suite still calls draft (every one new in 2026-07-28). */
  readonly suite: 'active' | 'all';
  start(): Promise<{ url: string; close(): Promise<void> }>;
}

const TARGETS: readonly Target[] = [
  { release: 'stable', suite: 'active', start: () => startConformanceServer() },
  { release: 'next', specVersion: '2025-11-25', suite: 'active', start: () => startConformanceServer() },
  { release: 'next', specVersion: '2026-07-28', suite: 'all', start: () => startModernConformanceServer() },
];

for (const target of TARGETS) {
  const label = `conformance ${target.release === 'stable' ? '0.1.16' : '0.2.0-alpha.12'} --suite ${target.suite}${target.specVersion === undefined ? '' : ` --spec-version ${target.specVersion}`}`;
  describe(label, () => {
    let fixture: { url: string; close(): Promise<void> };
    let stack: Stack;
    let direct: ConformanceRunResult;
    const run = (url: string): Promise<ConformanceRunResult> =>
      runConformance(url, { suite: target.suite, release: target.release, ...(target.specVersion === undefined ? {} : { specVersion: target.specVersion }) });

    before(async () => {
      fixture = await target.start();
      stack = await startStack({ servers: { conformance: { url: fixture.url, prefix: 'never' } } });
      direct = await run(fixture.url);
      console.log(counts(`${label}, fixture directly`, direct));
    });
    after(async () => {
      await stack?.close();
      await fixture?.close();
    });

    it('the fixture passes every scenario of the revision directly', () => {
      assert.ok(direct.passed.length >= 20, `only ${direct.passed.length} passed`);
      assert.deepEqual(direct.failed, [], failures(direct));
    });

    it('the passthrough endpoint passes every scenario the fixture passes', async () => {
      const through = await run(stack.serverUrl('conformance'));
      console.log(counts(`${label}, passthrough`, through));
      assert.deepEqual(through.failed, [], `${failures(through)}\n${stack.logs()}`);
      assert.deepEqual(through.passed, direct.passed);
    });

    it('/mcp with that server alone passes every scenario the fixture passes', async () => {
      const through = await run(stack.mcpUrl);
      console.log(counts(`${label}, /mcp`, through));
      assert.deepEqual(through.failed, [], `${failures(through)}\n${stack.logs()}`);
      assert.deepEqual(through.passed, direct.passed);
    });
  });
}
