import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigSchema, type Config } from './schema.js';

/** A configuration that could not be read, parsed or validated; the message names the field. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${VAR}` (or `${VAR:-default}`) in every string value with the environment's value.
 * Secrets stay out of the file; a missing variable without a default is an error naming the field.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, path: string[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`${path.join('.') || '(root)'}: environment variable ${name} is not set`);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, [...path, String(i)]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, [...path, k]);
    return out;
  }
  return value;
}

/** Validates an already-parsed document against the schema. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  const substituted = substituteEnv(raw ?? {}, env);
  let result: ReturnType<typeof ConfigSchema.safeParse>;
  try {
    result = ConfigSchema.safeParse(substituted);
  } catch (err) {
    // A check that trips over a value another check refused: still a refusal of the config.
    throw new ConfigError(`invalid config: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!result.success) throw new ConfigError(z.prettifyError(result.error));
  return result.data;
}

/** The YAML document of a config text, before substitution and validation; not YAML is a ConfigError. */
export function parseConfigDocument(text: string): unknown {
  try {
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new ConfigError(`not valid YAML: ${(err as Error).message}`);
  }
}

/** The names of the environment variables a config document refers to (`${NAME}`), as substitution sees them (YAML escapes resolved). */
export function envReferences(doc: unknown): Set<string> {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') for (const m of v.matchAll(ENV_REF)) names.add(m[1]!);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(doc);
  return names;
}

/** Parses YAML text (JSON is YAML too) into a validated Config. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfig(parseConfigDocument(text), env);
}

/** Reads and validates a config file. */
export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return parseConfigText(await readConfigText(path), env);
}

/** A config file's text; a file that cannot be read is a ConfigError naming it. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
