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
      const q = ns.expose('tools', server, name)?.id ?? null;
      assert.ok(q !== null);
      assert.deepEqual(ns.parseName(q), { server, name });
    }
  });

  it('never exposes a name outside the spec tool-name rules', () => {
    assert.equal(ns.expose('tools', 'alpha', 'has space')?.id ?? null, null);
    assert.equal(ns.expose('tools', 'alpha', 'slash/name')?.id ?? null, null);
    assert.equal(ns.expose('tools', 'alpha', 'é')?.id ?? null, null);
    assert.equal(ns.expose('tools', 'alpha', 'x'.repeat(128 - 'alpha__'.length))?.id ?? null, `alpha__${'x'.repeat(121)}`);
    assert.equal(ns.expose('tools', 'alpha', 'x'.repeat(129 - 'alpha__'.length))?.id ?? null, null);
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

  it('keeps the names and URIs of servers with prefix: never as they are, and never reads a prefix as theirs', () => {
    const mixed = new Namespace(['alpha', 'files'], '__', { modes: new Map([['files', 'never']]) });
    assert.equal(mixed.expose('tools', 'files', 'read_file')?.id ?? null, 'read_file');
    assert.equal(mixed.expose('tools', 'alpha', 'echo')?.id ?? null, 'alpha__echo');
    assert.equal(mixed.qualifyUri('files', 'file:///etc/motd'), 'file:///etc/motd');
    assert.equal(mixed.qualifyUri('alpha', 'demo://x'), 'alpha+demo://x');
    assert.deepEqual(mixed.parseName('alpha__echo'), { server: 'alpha', name: 'echo' });
    // An unprefixed server's name is found through its catalog, not parsed.
    assert.equal(mixed.parseName('files__read_file'), null);
    assert.equal(mixed.parseUri('files+file:///etc/motd'), null);
    assert.equal(mixed.expose('tools', 'files', 'bad name')?.id ?? null, null, 'the tool-name rules still hold');
    assert.deepEqual(mixed.unprefixed, ['files']);
    // Task ids stay namespaced for every server: they are the gateway's to keep apart.
    assert.deepEqual(mixed.parseTaskId(mixed.qualifyTaskId('files', 't1')), { server: 'files', name: 't1' });
  });
});
