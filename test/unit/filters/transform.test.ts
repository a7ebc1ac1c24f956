import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText, ConfigError } from '../../../src/config/load.js';
import { FiltersSchema } from '../../../src/filters/schema.js';
import { ToolCallTransforms, type CallFacts } from '../../../src/filters/transform.js';

const FACTS: CallFacts = {
  server: 'db',
  tool: 'query',
  clientId: 'ci-bot',
  tenant: 'acme',
  groups: ['staff'],
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  requestId: () => '00f067aa0ba902b7',
  now: 1_800_000_000_000,
};

function transforms(global: unknown, perServer: Record<string, unknown> = {}): ToolCallTransforms {
  return ToolCallTransforms.compile(
    global === undefined ? undefined : FiltersSchema.parse(global),
    Object.fromEntries(['db', 'search'].map((s) => [s, perServer[s] === undefined ? {} : { filters: FiltersSchema.parse(perServer[s]) }])),
  );
}

describe('tool call transforms', () => {
  it('does nothing at all when no filter is configured', () => {
    const t = transforms(undefined);
    assert.equal(t.enabled, false);
    assert.equal(t.apply({ a: 1 }, FACTS), null);
  });

  it('adds the seed’s _context (client id, timestamp, trace id) by default, and what include asks for', () => {
    assert.deepEqual(transforms({ context: {} }).apply({ sql: 'x' }, FACTS), {
      arguments: { sql: 'x', _context: { client_id: 'ci-bot', timestamp: FACTS.now, trace_id: FACTS.traceId } },
      decisions: [{ filter: 'context', action: 'added' }],
      contextField: '_context',
    });
    const all = transforms({ context: { field: 'ctx', include: ['tenant', 'groups', 'request_id'] } }).apply(undefined, FACTS);
    assert.deepEqual(all?.arguments, { ctx: { tenant: 'acme', groups: ['staff'], request_id: '00f067aa0ba902b7' } });
  });

  it('never overwrites what the client sent unless told to, and says which it did', () => {
    const forged = { _context: { client_id: 'someone-else' } };
    const kept = transforms({ context: {} }).apply(forged, FACTS)!;
    assert.deepEqual(kept.arguments, forged);
    assert.deepEqual(kept.decisions, [{ filter: 'context', action: 'kept' }]);
    const replaced = transforms({ context: { overwrite: true } }).apply(forged, FACTS)!;
    assert.equal((replaced.arguments['_context'] as Record<string, unknown>)['client_id'], 'ci-bot');
    assert.deepEqual(replaced.decisions, [{ filter: 'context', action: 'replaced' }]);
  });

  it('applies only to the tools its globs match, and a server’s own filters replace the global ones', () => {
    const t = transforms({ context: { tools: ['search_*'] } }, { db: { defaults: [{ arguments: { limit: 10 } }] } });
    // db: its own defaults; the global context (search_* tools only) does not match `query`.
    assert.deepEqual(t.apply({}, FACTS)?.arguments, { limit: 10 });
    assert.equal(t.apply({}, { ...FACTS, server: 'search', tool: 'query' }), null);
    assert.deepEqual(t.apply({}, { ...FACTS, server: 'search', tool: 'search_docs' })?.decisions, [{ filter: 'context', action: 'added' }]);
  });

  it('fills the placeholders of defaults, at any depth, and leaves other strings alone', () => {
    const t = transforms({
      defaults: [
        { tools: ['qu*'], arguments: { requester: '{{client_id}}@{{tenant}}', meta: { by: ['{{server}}/{{tool}}', 'plain'], at: '{{timestamp}}' }, limit: 10 } },
        { tools: ['*'], arguments: { limit: 99 }, overwrite: true },
      ],
    });
    const out = t.apply({ limit: 5 }, FACTS)!;
    assert.deepEqual(out.arguments, { limit: 99, requester: 'ci-bot@acme', meta: { by: ['db/query', 'plain'], at: String(FACTS.now) } });
    assert.deepEqual(
      out.decisions.map((d) => `${d.filter}:${d.action}`),
      ['defaults:added', 'defaults:added', 'defaults:kept', 'defaults:replaced'],
    );
  });

  it('refuses unknown placeholders and bad argument names at load, naming the field', () => {
    const err = (yaml: string): string => {
      try {
        parseConfigText(yaml, {});
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.message;
      }
      assert.fail('expected a config error');
    };
    const base = 'servers:\n  db:\n    url: http://db/mcp\n';
    assert.match(err(`${base}filters:\n  defaults:\n    - arguments: {who: "{{user}}"}\n`), /unknown placeholder \{\{user\}\}[^]*filters\.defaults\[0\]\.arguments\.who/);
    assert.match(err(`${base}    filters:\n      context: {field: "1bad"}\n`), /servers\.db\.filters\.context\.field/);
    assert.match(err(`${base}filters:\n  context: {include: [password]}\n`), /filters\.context\.include/);
    assert.match(err(`${base}filters:\n  pii: {custom: [{name: twice, pattern: '(a)\\1'}]}\n`), /not supported[^]*filters\.pii\.custom\[0\]\.pattern/);
  });
});
