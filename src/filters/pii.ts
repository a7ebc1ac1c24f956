import { GlobSet } from '../lib/glob.js';
import { LinearRegex } from '../lib/linear-regex.js';
import { isObject } from '../mcp/message.js';
import type { FiltersConfig } from './schema.js';

/**
 * PII and secret detection on tool call arguments and results. Each detector is a regular
 * expression without nested or unbounded repetition (so its work is linear in the text, with a
 * small constant) plus a check the shape alone cannot make (Luhn for cards, mod 97 for IBANs, the
 * SSA's rules for SSNs, the digit count of phone numbers). Strings longer than MAX_SCANNED are
 * scanned in their first MAX_SCANNED characters only.
 */

export const PII_RULES = ['email', 'phone', 'card', 'ssn', 'iban', 'secret'] as const;
export type PiiRule = (typeof PII_RULES)[number];

/** What a finding does: the value replaced by `[REDACTED:<rule>]`, the message refused, or only recorded. */
export type PiiAction = 'redact' | 'block' | 'log';

/** Longest part of one string that is scanned. */
const MAX_SCANNED = 1024 * 1024;
/** Deepest nesting walked in arguments or results. */
const MAX_DEPTH = 64;

interface Detector {
  readonly rule: PiiRule;
  readonly re: RegExp;
  readonly accept?: (match: string) => boolean;
}

const DETECTORS: readonly Detector[] = [
  { rule: 'email', re: /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}/g },
  { rule: 'card', re: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g, accept: (m) => luhn(m.replace(/\D/g, '')) },
  { rule: 'ssn', re: /(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])/g, accept: validSsn },
  { rule: 'iban', re: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b/g, accept: (m) => ibanValid(m.replace(/ /g, '')) },
  {
    rule: 'secret',
    re: /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bxox[abprs]-[A-Za-z0-9-]{10,200}\b|\bsk-(?:proj-)?[A-Za-z0-9_-]{20,200}\b|\b[sr]k_live_[A-Za-z0-9]{16,200}\b|\bAIza[0-9A-Za-z_-]{35}\b|\beyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{8,4096}\b|-----BEGIN [A-Z ]{0,32}PRIVATE KEY-----/g,
  },
  // After cards and SSNs, so their digits are not read as a phone number first.
  // International (+ and 8 to 15 digits), or the 3-3-4 national form with separators; a date or
  // a plain run of digits is neither.
  { rule: 'phone', re: /(?<![\w+])\+\d[\d ().-]{6,18}\d(?!\w)|(?<![\w(])\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?![\w-])/g, accept: (m) => phoneDigits(m) },
];

function luhn(digits: string): boolean {
  if (digits.length < 13 || digits.length > 19) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

function validSsn(m: string): boolean {
  const [area, group, serial] = m.split('-') as [string, string, string];
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

function ibanValid(iban: string): boolean {
  if (iban.length < 15 || iban.length > 34) return false;
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rest = 0;
  for (const ch of moved) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? code - 55 : code - 48;
    rest = (value > 9 ? rest * 100 + value : rest * 10 + value) % 97;
  }
  return rest === 1;
}

function phoneDigits(m: string): boolean {
  const digits = m.replace(/\D/g, '').length;
  // With a country code (+) 8 to 15 digits (E.164); without, the 10 of a national number.
  return m.startsWith('+') ? digits >= 8 && digits <= 15 : digits === 10;
}

/** What a scan found and what became of the value. */
export interface PiiScan {
  /** The value with findings redacted (the same value when nothing was, or the action is not redact). */
  readonly value: unknown;
  /** The rules that matched, each once: built-in ones in detector order, then custom ones. */
  readonly found: readonly string[];
}

/** An operator's own rule: a name and a pattern run by the linear-time engine. */
export interface CustomRule {
  readonly name: string;
  readonly re: LinearRegex;
}

/** Scans one string with the given detectors (and custom rules); redacts when asked. */
export function scanText(text: string, rules: ReadonlySet<PiiRule>, redact: boolean, custom: readonly CustomRule[] = []): { text: string; found: Set<string> } {
  const found = new Set<string>();
  let out = text.length > MAX_SCANNED ? text.slice(0, MAX_SCANNED) : text;
  const tail = text.length > MAX_SCANNED ? text.slice(MAX_SCANNED) : '';
  for (const d of DETECTORS) {
    if (!rules.has(d.rule)) continue;
    d.re.lastIndex = 0;
    out = out.replace(d.re, (m: string) => {
      if (d.accept !== undefined && !d.accept(m)) return m;
      found.add(d.rule);
      return redact ? `[REDACTED:${d.rule}]` : m;
    });
  }
  for (const rule of custom) {
    const spans = rule.re.spans(out).filter((s) => s.end > s.start);
    if (spans.length === 0) continue;
    found.add(rule.name);
    if (!redact) continue;
    let rebuilt = '';
    let at = 0;
    for (const s of spans) {
      rebuilt += `${out.slice(at, s.start)}[REDACTED:${rule.name}]`;
      at = s.end;
    }
    out = rebuilt + out.slice(at);
  }
  return { text: redact ? out + tail : text, found };
}

/** Scans every string (and object key's value) of a JSON value, to MAX_DEPTH. */
export function scanValue(value: unknown, rules: ReadonlySet<PiiRule>, redact: boolean, custom: readonly CustomRule[] = []): PiiScan {
  const found = new Set<string>();
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') {
      const r = scanText(v, rules, redact, custom);
      for (const f of r.found) found.add(f);
      return r.text;
    }
    if (depth >= MAX_DEPTH) return v;
    if (Array.isArray(v)) {
      let changed = false;
      const out = v.map((x) => {
        const y = walk(x, depth + 1);
        if (y !== x) changed = true;
        return y;
      });
      return changed ? out : v;
    }
    if (isObject(v)) {
      let changed = false;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        const y = walk(x, depth + 1);
        if (y !== x) changed = true;
        out[k] = y;
      }
      return changed ? out : v;
    }
    return v;
  };
  const scanned = walk(value, 0);
  return { value: scanned, found: [...PII_RULES.filter((r) => found.has(r)), ...custom.map((c) => c.name).filter((n) => found.has(n))] };
}

interface ServerPii {
  readonly tools: GlobSet;
  readonly rules: ReadonlySet<PiiRule>;
  readonly custom: readonly CustomRule[];
  readonly action: PiiAction;
  readonly arguments: boolean;
  readonly results: boolean;
}

/** The PII filter of each server (`filters.pii`, or the server's own). */
export class PiiFilters {
  private constructor(private readonly byServer: ReadonlyMap<string, ServerPii>) {}

  static compile(global: FiltersConfig | undefined, servers: Readonly<Record<string, { readonly filters?: FiltersConfig | undefined }>>): PiiFilters {
    const byServer = new Map<string, ServerPii>();
    for (const [name, s] of Object.entries(servers)) {
      const p = s.filters?.pii ?? global?.pii;
      if (p === undefined) continue;
      const custom = (p.custom ?? []).map((c) => ({ name: c.name, re: new LinearRegex(c.pattern) }));
      byServer.set(name, { tools: new GlobSet(p.tools), rules: new Set(p.detect), custom, action: p.action, arguments: p.arguments, results: p.results });
    }
    return new PiiFilters(byServer);
  }

  /** The filter for a server's tool on arguments or results; null: none. */
  for(server: string, tool: string, where: 'arguments' | 'results'): ServerPii | null {
    const p = this.byServer.get(server);
    return p === undefined || !p[where] || !p.tools.test(tool) ? null : p;
  }
}
