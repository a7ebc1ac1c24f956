import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FiltersSchema } from '../../../src/filters/schema.js';
import { ArgumentValidation } from '../../../src/filters/validate.js';

const v = ArgumentValidation.compile(FiltersSchema.parse({ validate: { tools: ['add', 'q*'] } }), {
  alpha: {},
  beta: { filters: FiltersSchema.parse({ context: {} }) },
  gamma: { filters: FiltersSchema.parse({ validate: { tools: ['echo'] } }) },
});

const ADD = {
  type: 'object',
  properties: { a: { type: 'number' }, b: { type: 'number' }, opts: { type: 'object', properties: { round: { type: 'boolean' } } } },
  required: ['a', 'b'],
  additionalProperties: false,
};

describe('argument validation', () => {
  it('checks only the tools its globs match, on the servers it is configured for', () => {
    assert.equal(v.checks('alpha', 'add'), true);
    assert.equal(v.checks('alpha', 'query_users'), true);
    assert.equal(v.checks('alpha', 'echo'), false);
    assert.equal(v.checks('beta', 'add'), true, 'beta has a context of its own: the global validate still applies');
    assert.equal(v.checks('gamma', 'add'), false, 'gamma’s own validate replaces the global one');
    assert.equal(v.checks('gamma', 'echo'), true);
  });

  it('names the failing path and what failed there (JSON Schema 2020-12 unless the schema says draft-07)', () => {
    assert.equal(v.check(ADD, { a: 1, b: 2 }), null);
    assert.deepEqual(v.check(ADD, { a: 'x', b: 2 }), { path: '/a', message: 'must be number' });
    assert.deepEqual(v.check(ADD, { a: 1 }), { path: '/b', message: "must have required property 'b'" });
    assert.deepEqual(v.check(ADD, { a: 1, b: 2, c: 3 }), { path: '/c', message: 'must NOT have additional properties' });
    assert.deepEqual(v.check(ADD, { a: 1, b: 2, opts: { round: 'yes' } }), { path: '/opts/round', message: 'must be boolean' });
    const draft07 = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { n: { type: 'integer' } }, dependencies: { n: ['m'] } };
    assert.deepEqual(v.check(draft07, { n: 1 }), { path: '/m', message: 'must have property m when property n is present' });
    const modern = { type: 'object', properties: { list: { type: 'array', prefixItems: [{ type: 'string' }] } } };
    assert.deepEqual(v.check(modern, { list: [1] }), { path: '/list/0', message: 'must be string' });
  });

  it('leaves to the server what it cannot check safely: patterns, patternProperties, schemas it cannot compile', () => {
    const hostile = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } };
    const started = performance.now();
    assert.equal(v.check(hostile, { s: `${'a'.repeat(64)}!` }), null, 'the pattern is not run');
    assert.ok(performance.now() - started < 500, 'and so takes no time');
    assert.deepEqual(v.check(hostile, { s: 5 }), { path: '/s', message: 'must be string' }, 'the rest of the schema still applies');
    assert.equal(v.check({ type: 'object', patternProperties: { '^x': { type: 'number' } }, additionalProperties: false }, { y: 1 }), null);
    assert.equal(v.check({ type: 'object', properties: { a: { $ref: '#/nowhere' } } }, { a: 1 }), null);
    assert.equal(v.check(undefined, { a: 1 }), null, 'no schema: nothing to check');
  });
});
