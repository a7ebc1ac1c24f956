import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, freePorts, freePortMap, isPortOpen } from '../support/ports.js';
import { parseSse } from '../support/mcp-client.js';

test('freePorts gives distinct ports', async () => {
  const ps = await freePorts(20);
  assert.equal(new Set(ps).size, 20);
  const more = await freePorts(20);
  for (const p of more) assert.ok(!ps.includes(p));
  const one = await freePort();
  assert.ok(one > 0 && !ps.includes(one) && !more.includes(one));
  const m = await freePortMap(['a', 'b']);
  assert.notEqual(m.a, m.b);
  assert.equal(await isPortOpen(m.a), false);
});
test('parseSse', () => {
  assert.deepEqual(parseSse('event: message\ndata: {"a":1}\n\ndata: x\ndata: y\n\n'), [{ a: 1 }, 'x\ny']);
});
test('skipped one', { skip: 'demo' }, () => {});
if (process.env['SAMPLE_FAIL'] === '1') test('fails on demand', () => assert.fail('asked to fail'));
