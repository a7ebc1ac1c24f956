import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Namespace } from '../../../src/aggregated/naming.js';

describe('Namespace', () => {
  const ns = new Namespace(['alpha', 'beta', 'my-db'], '__');

  it('round-trips tool names, including names that contain the separator', () => {
    for (const [server, name] of [
      ['alpha', 'echo'],
      ['my-db', 'query_users'],
      ['beta', 'a__b'],
      ['beta', 'x.y-z'],
    ] as const) {
      const q = ns.qualifyName(server, name);
      assert.ok(q !== null);
      assert.deepEqual(ns.parseName(q), { server, name });
    }
  });

  it('never exposes a name outside the spec tool-name rules', () => {
    assert.equal(ns.qualifyName('alpha', 'has space'), null);
    assert.equal(ns.qualifyName('alpha', 'slash/name'), null);
    assert.equal(ns.qualifyName('alpha', 'é'), null);
    assert.equal(ns.qualifyName('alpha', 'x'.repeat(128 - 'alpha__'.length)), `alpha__${'x'.repeat(121)}`);
    assert.equal(ns.qualifyName('alpha', 'x'.repeat(129 - 'alpha__'.length)), null);
  });

  it('rejects names that do not resolve to a configured server', () => {
    for (const bad of ['echo', 'gamma__echo', '__echo', 'alpha__', 'ALPHA__echo', 'alpha_echo', 'alpha\u200b__echo']) {
      assert.equal(ns.parseName(bad), null, bad);
    }
  });

  it('uses a separator that may itself occur in server names', () => {
    const dash = new Namespace(['a', 'b-c'], '-');
    assert.deepEqual(dash.parseName('b-c-tool'), { server: 'b-c', name: 'tool' });
    assert.deepEqual(dash.parseName('a-tool-x'), { server: 'a', name: 'tool-x' });
  });

  it('namespaces URIs reversibly so equal upstream URIs never collide', () => {
    const uri = 'git+ssh://host/repo?x=1#frag';
    const a = ns.qualifyUri('alpha', uri);
    const b = ns.qualifyUri('beta', uri);
    assert.notEqual(a, b);
    assert.deepEqual(ns.parseUri(a), { server: 'alpha', name: uri });
    assert.deepEqual(ns.parseUri(b), { server: 'beta', name: uri });
    assert.deepEqual(ns.parseUri(ns.qualifyUri('alpha', 'test://template/{id}/data')), {
      server: 'alpha',
      name: 'test://template/{id}/data',
    });
    for (const bad of ['demo://x', 'gamma+demo://x', '+demo://x', 'alpha+']) assert.equal(ns.parseUri(bad), null, bad);
  });

  it('namespaces task ids reversibly, whatever characters the upstream’s id holds', () => {
    for (const id of ['786512e5-6e52-4a1f', 'with+plus', 'a:b/c', 'x']) {
      assert.deepEqual(ns.parseTaskId(ns.qualifyTaskId('beta', id)), { server: 'beta', name: id }, id);
    }
    for (const bad of ['t-1', 'gamma+t-1', '+t-1', 'alpha+']) assert.equal(ns.parseTaskId(bad), null, bad);
  });

  it('round-trips server→client request ids of both types', () => {
    for (const id of [0, 7, -3, 'abc', 'with:colon', '']) {
      const q = ns.qualifyServerRequestId('beta', id);
      assert.equal(typeof q, 'string');
      assert.deepEqual(ns.parseServerRequestId(q), { server: 'beta', id });
    }
    assert.equal(ns.parseServerRequestId(5), null);
    assert.equal(ns.parseServerRequestId('mcpgw:gamma:n1'), null);
    assert.equal(ns.parseServerRequestId('mcpgw:beta:n1x'), null);
    assert.equal(ns.parseServerRequestId('other'), null);
  });
});
