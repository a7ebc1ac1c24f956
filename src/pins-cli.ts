import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile } from './config/load.js';
import { redisTimeoutMs } from './state/schema.js';
import { createRedisClient, describeRedisTarget, redisConnectionOptions, waitForRedis, type RedisClient } from './state/redis.js';
import { pinStore } from './filters/pin-store.js';
import { splitPinKey, type PinRecord, type PinStore } from './filters/pins.js';

export const PINS_USAGE = `usage: mcp-gateway pins list --config FILE [--json]
       mcp-gateway pins approve --config FILE (SERVER/TOOL[@FINGERPRINT] ... | --all)

list     every pinned tool: its fingerprint, and a changed definition waiting for approval
approve  makes the changed definition of each tool named its pin (with @FINGERPRINT, only if
         that is the definition waiting: a later change is not approved unseen); --all approves
         every one waiting. Running processors pick approvals up within seconds.
`;

type Out = { write(s: string): unknown };

/** `mcp-gateway pins ...`: exit 0 done, 1 nothing to approve or a name not found, 2 bad usage. */
export async function pinsCommand(args: readonly string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, all: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help === true) {
    out.write(PINS_USAGE);
    return 0;
  }
  if ((sub !== 'list' && sub !== 'approve') || values.config === undefined) {
    err.write(PINS_USAGE);
    return 2;
  }
  const config = await loadConfigFile(values.config);
  let redis: RedisClient | null = null;
  if (config.redis !== undefined && config.pins?.store !== 'file') {
    const connection = redisConnectionOptions(config.redis, redisTimeoutMs(config.redis));
    redis = createRedisClient(connection);
    if (!(await waitForRedis(redis, 5_000))) {
      redis.disconnect();
      err.write(`mcp-gateway pins: redis at ${describeRedisTarget(connection.target)} does not answer\n`);
      return 1;
    }
  }
  try {
    const store = pinStore(config, dirname(resolve(values.config)), redis);
    if (sub === 'list') return await list(store, values.json === true, out);
    if (values.all !== true && positionals.length === 0) {
      err.write(PINS_USAGE);
      return 2;
    }
    return await approve(store, values.all === true ? null : positionals, out, err);
  } finally {
    redis?.disconnect();
  }
}

async function list(store: PinStore, json: boolean, out: Out): Promise<number> {
  const pins = [...(await store.load()).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (json) {
    out.write(`${JSON.stringify(Object.fromEntries(pins), null, 2)}\n`);
    return 0;
  }
  const rows = pins.map(([key, p]) => [key, p.pending === undefined ? 'pinned' : 'pending', short(p.fingerprint), p.pending === undefined ? '' : `${short(p.pending.fingerprint)} changed ${p.pending.changed.join(', ')} (seen ${p.pending.seen_at})`]);
  const width = Math.max(11, ...rows.map((r) => r[0]!.length));
  out.write(`${'SERVER/TOOL'.padEnd(width)}  STATE    PINNED        WAITING\n`);
  for (const r of rows) out.write(`${r[0]!.padEnd(width)}  ${r[1]!.padEnd(7)}  ${r[2]!.padEnd(12)}  ${r[3]}\n`.trimEnd() + '\n');
  const waiting = rows.filter((r) => r[1] === 'pending').length;
  out.write(`${pins.length} pinned tool(s), ${waiting} changed and waiting for approval\n`);
  return 0;
}

/** `sha256:` and the first 12 hex digits: enough to tell fingerprints apart on screen. */
function short(fp: string): string {
  return fp.slice(0, 'sha256:'.length + 12);
}

async function approve(store: PinStore, names: readonly string[] | null, out: Out, err: Out): Promise<number> {
  const pins = await store.load();
  const wanted = names === null ? [...pins.keys()].filter((k) => pins.get(k)!.pending !== undefined).map((k) => ({ key: k, fingerprint: null as string | null })) : names.map(parseName);
  let failed = false;
  let approved = 0;
  const now = new Date().toISOString();
  for (const w of wanted) {
    const rec = pins.get(w.key);
    if (rec === undefined || splitPinKey(w.key).tool === '') {
      err.write(`${w.key}: no such pinned tool\n`);
      failed = true;
      continue;
    }
    if (rec.pending === undefined) {
      err.write(`${w.key}: nothing waiting for approval\n`);
      failed = true;
      continue;
    }
    if (w.fingerprint !== null && !rec.pending.fingerprint.startsWith(w.fingerprint)) {
      err.write(`${w.key}: the definition waiting is ${rec.pending.fingerprint}, not ${w.fingerprint}; review it again\n`);
      failed = true;
      continue;
    }
    const pinned: PinRecord = { fingerprint: rec.pending.fingerprint, parts: rec.pending.parts, pinned_at: now };
    await store.put(w.key, pinned);
    out.write(`${w.key}: approved ${pinned.fingerprint} (changed ${rec.pending.changed.join(', ')})\n`);
    approved++;
  }
  if (wanted.length === 0) out.write('nothing waiting for approval\n');
  return failed || approved === 0 ? 1 : 0;
}

/** `server/tool` or `server/tool@sha256:…` (a fingerprint prefix of at least 12 hex digits). */
function parseName(given: string): { key: string; fingerprint: string | null } {
  const at = given.lastIndexOf('@sha256:');
  if (at < 0) return { key: given, fingerprint: null };
  return { key: given.slice(0, at), fingerprint: given.slice(at + 1) };
}
