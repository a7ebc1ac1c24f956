import { z } from 'zod';

/** Durations as `250ms`, `10s`, `5m`, `1h`: the one duration syntax of the config file. */
export const DurationSchema = z
  .string()
  .regex(/^[0-9]+(ms|s|m|h)$/, 'expected a duration such as 250ms, 10s, 5m or 1h');

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Converts `250ms`, `10s`, `5m`, `1h` to milliseconds. */
export function durationMs(d: string): number {
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(d);
  if (m === null) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}
