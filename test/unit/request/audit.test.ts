import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { immediateOf, mcpPost, requestBody, requestHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext } from '../../support/in-memory-upstream.js';

type Line = Record<string, unknown>;

/** One allowed and one refused tools/call on a passthrough endpoint; the log lines each left. */
async function auditedCalls(operations: boolean): Promise<{ allowed: Line[]; refused: Line[] }> {
  const lines: Line[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const { ctx, close } = await inMemoryContext({ alpha: {} }, { policies: [{ servers: ['alpha'], tools: { denied: ['secret'] } }], logging: { operations } }, log);
  try {
    const ok = startCall(ctx);
    await ok.send(requestHeaders(mcpPost('/servers/alpha/mcp')));
    await ok.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } }));
    ok.emit('end'); // the request is over: the exchange records its operation
    const no = startCall(ctx);
    await no.send(requestHeaders(mcpPost('/servers/alpha/mcp')));
    assert.equal(immediateOf(await no.send(requestBody({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'secret' } }))).status, 200);
    no.emit('end');
    await new Promise((r) => setImmediate(r));
  } finally {
    await close();
  }
  const byTool = (tool: string): Line[] => lines.filter((l) => l['tool'] === tool && typeof l['trace_id'] === 'string');
  return { allowed: byTool('echo'), refused: byTool('secret') };
}

describe('access audit lines', () => {
  it('an allowed call is audited on its operation line; a refusal keeps a line of its own', async () => {
    const { allowed, refused } = await auditedCalls(true);
    assert.equal(allowed.length, 1, JSON.stringify(allowed));
    assert.deepEqual(
      { event: allowed[0]!['event'], decision: allowed[0]!['decision'], reason: allowed[0]!['reason'], server: allowed[0]!['server'] },
      { event: 'tool_call', decision: 'allow', reason: 'allowed', server: 'alpha' },
    );
    const audit = refused.find((l) => l['event'] === 'mcpgw_access');
    assert.equal(audit?.['decision'], 'deny', JSON.stringify(refused));
    assert.ok(refused.some((l) => l['event'] === 'tool_call' && !('decision' in l)), 'the refused operation has its line too, without an allow');
  });

  it('without operation lines an allowed call still gets its own audit line', async () => {
    const { allowed, refused } = await auditedCalls(false);
    assert.deepEqual(
      allowed.map((l) => [l['event'], l['decision']]),
      [['mcpgw_access', 'allow']],
    );
    assert.deepEqual(
      refused.map((l) => [l['event'], l['decision']]),
      [['mcpgw_access', 'deny']],
    );
  });
});
