import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runConformance, type ConformanceRunResult } from '../../scripts/conformance.js';
import { startConformanceServer, type ConformanceServer } from '../fixtures/mcp-servers/conformance-server.js';
import { startStack, type Stack } from '../support/stack.js';

function failures(r: ConformanceRunResult): string {
  return r.scenarios
    .filter((s) => !s.passed)
    .map((s) => `${s.scenario}: ${s.checks.filter((c) => c.status === 'FAILURE').map((c) => c.errorMessage ?? c.name).join('; ')}`)
    .join('\n');
}

describe('official MCP conformance suite (server, --suite active)', () => {
  let fixture: ConformanceServer;
  let stack: Stack;
  let direct: ConformanceRunResult;

  before(async () => {
    fixture = await startConformanceServer();
    stack = await startStack({ servers: { conformance: { url: fixture.url } } });
    direct = await runConformance(fixture.url, { suite: 'active' });
  });
  after(async () => {
    await stack?.close();
    await fixture?.close();
  });

  it('our fixture passes every active scenario directly', () => {
    assert.ok(direct.passed.length >= 30, `only ${direct.passed.length} passed`);
    assert.deepEqual(direct.failed, [], failures(direct));
  });

  it('the gateway passthrough endpoint passes every scenario the fixture passes', async () => {
    const through = await runConformance(stack.serverUrl('conformance'), { suite: 'active' });
    assert.deepEqual(through.failed, [], `${failures(through)}\n${stack.logs()}`);
    assert.deepEqual(through.passed, direct.passed);
  });
});
