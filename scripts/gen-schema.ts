import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigSchema } from '../src/config/schema.js';

/**
 * Writes deploy/config.schema.json from the zod schema (the single source of truth), or with
 * --check fails when the committed file is out of date.
 */
const target = fileURLToPath(new URL('../../deploy/config.schema.json', import.meta.url));
const schema = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' });
const text = `${JSON.stringify({ title: 'mcp-gateway configuration', ...schema }, null, 2)}\n`;

if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current !== text) {
    process.stderr.write('deploy/config.schema.json is out of date: run `npm run gen:schema` and commit it\n');
    process.exit(1);
  }
  process.stdout.write('deploy/config.schema.json is current\n');
} else {
  await writeFile(target, text);
  process.stdout.write(`wrote ${target}\n`);
}
