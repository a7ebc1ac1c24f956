import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigSchema } from '../../../src/config/schema.js';
import { ERROR_TABLE, GATEWAY_ERROR_CODES } from '../../../src/errors/codes.js';

const readme = readFileSync(fileURLToPath(new URL('../../../../README.md', import.meta.url)), 'utf8');

interface JsonSchemaNode {
  properties?: Record<string, JsonSchemaNode>;
  additionalProperties?: JsonSchemaNode | boolean;
  anyOf?: JsonSchemaNode[];
}

/** Every leaf key path of the config schema, with `<name>` for record keys. */
function keyPaths(node: JsonSchemaNode, prefix: string): string[] {
  const out: string[] = [];
  if (node.properties !== undefined) {
    for (const [k, child] of Object.entries(node.properties)) {
      const path = prefix === '' ? k : `${prefix}.${k}`;
      const nested = keyPaths(child, path);
      out.push(...(nested.length > 0 ? nested : [path]));
    }
  } else if (typeof node.additionalProperties === 'object') {
    out.push(...keyPaths(node.additionalProperties, `${prefix}.<name>`));
  }
  return out;
}

describe('README', () => {
  it('documents every config key the schema accepts', () => {
    const schema = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
    const paths = keyPaths(schema, '');
    assert.ok(paths.length > 20, paths.join(', '));
    const missing = paths.filter((p) => !readme.includes(`\`${p}\``));
    assert.deepEqual(missing, [], 'add these keys to the README config reference');
  });

  it('lists every error code with its HTTP status and JSON-RPC code', () => {
    for (const code of GATEWAY_ERROR_CODES) {
      const spec = ERROR_TABLE[code];
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
      assert.ok(row !== undefined, `README error table lacks ${code}`);
      const cells = row.split('|').map((c) => c.trim());
      assert.equal(cells[2], String(spec.http), `${code} HTTP status`);
      assert.equal(cells[3], String(spec.jsonrpc), `${code} JSON-RPC code`);
    }
  });
});
