/**
 * Spoof-resistance for the names and URIs access policy is checked on.
 *
 * Policy compares strings; upstreams, clients and humans may read those strings differently
 * (normalising Unicode, folding case, decoding percent escapes, resolving `..`). The rules here
 * make sure that every way of writing a name that could land on a forbidden entity either matches
 * the deny rule too or is refused outright:
 *
 * - A tool or prompt name is refused when it is not in NFC, contains control, format (zero-width,
 *   bidi override), default-ignorable, private-use, unassigned or whitespace characters, differs
 *   from its NFKC form (fullwidth letters, ligatures, mathematical alphanumerics, superscripts), or
 *   mixes look-alike scripts (Latin with Cyrillic, Greek, ...). MCP tool names are ASCII by spec
 *   (SEP-986), so none of this costs a legitimate name anything.
 * - Deny rules match a folded form (compatibility-decomposed, marks stripped, case-folded), so
 *   `ECHO` or `écho` cannot slip past a rule that denies `echo`. Allow rules stay exact and
 *   case-sensitive, as tool names are: folding may only ever widen what is denied.
 * - URIs under a resource rule are canonicalised (percent escapes of unreserved characters
 *   decoded, hex upper-cased, scheme and host lower-cased) and refused when they carry encoded `/`,
 *   `\`, `%` or control bytes, backslashes, or `.`/`..` path segments, raw or encoded.
 */

/** Why a name or URI was refused before any rule was consulted. */
export type SuspiciousReason =
  | 'empty'
  | 'too_long'
  | 'not_nfc'
  | 'invisible_or_control'
  | 'compatibility_form'
  | 'mixed_script'
  | 'backslash'
  | 'bad_percent_encoding'
  | 'suspicious_encoding'
  | 'dot_segment';

/** Longest tool/prompt name considered (SEP-986 allows 128; upstream names may be a little longer). */
export const MAX_NAME_LENGTH = 256;

/** Longest resource URI considered. */
export const MAX_URI_LENGTH = 8192;

// Visible ASCII is the overwhelmingly common case and can skip every Unicode check below.
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

const INVISIBLE_OR_CONTROL =
  /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{White_Space}\p{Default_Ignorable_Code_Point}]/u;

// What percent escapes may spell: the same, except a plain space (`%20` is everyday in file names).
const INVISIBLE_OR_CONTROL_DECODED =
  /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]|(?! )\p{White_Space}/u;

/** Scripts whose letters are routinely confused with each other's. */
const LOOKALIKE_SCRIPTS: readonly RegExp[] = [
  /\p{sc=Latin}/u,
  /\p{sc=Greek}/u,
  /\p{sc=Cyrillic}/u,
  /\p{sc=Armenian}/u,
  /\p{sc=Cherokee}/u,
  /\p{sc=Coptic}/u,
];

const STRIPPED_FOR_DENY = /[\p{M}\p{Cc}\p{Cf}\p{White_Space}\p{Default_Ignorable_Code_Point}]/gu;

/**
 * Refusal reason for a tool or prompt name, or null when the name is acceptable. Acceptable names
 * are exactly the ones policy can reason about without ambiguity.
 */
export function suspiciousName(name: string): SuspiciousReason | null {
  if (name.length === 0) return 'empty';
  if (name.length > MAX_NAME_LENGTH) return 'too_long';
  if (VISIBLE_ASCII.test(name)) return null;
  if (INVISIBLE_OR_CONTROL.test(name)) return 'invisible_or_control';
  if (name.normalize('NFC') !== name) return 'not_nfc';
  if (name.normalize('NFKC') !== name) return 'compatibility_form';
  if (mixesLookalikeScripts(name)) return 'mixed_script';
  return null;
}

/**
 * The form deny rules are matched on: compatibility-decomposed, combining marks and invisible
 * characters removed, case-folded. Applied to both the rule (at load) and the name (per check).
 */
export function foldForDeny(s: string): string {
  if (VISIBLE_ASCII.test(s)) return s.toLowerCase();
  // Upper-then-lower approximates full case folding (ß → ss, dotless ı → i) without tables.
  const once = s.normalize('NFKD').replace(STRIPPED_FOR_DENY, '').toUpperCase().toLowerCase();
  return once.normalize('NFKD').replace(STRIPPED_FOR_DENY, '');
}

function mixesLookalikeScripts(name: string): boolean {
  let seen = -1;
  for (const ch of name) {
    if (ch < '\x80') {
      if (/[A-Za-z]/.test(ch)) {
        if (seen !== -1 && seen !== 0) return true;
        seen = 0;
      }
      continue;
    }
    for (let i = 0; i < LOOKALIKE_SCRIPTS.length; i++) {
      if (LOOKALIKE_SCRIPTS[i]!.test(ch)) {
        if (seen !== -1 && seen !== i) return true;
        seen = i;
        break;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------- URIs

/** A URI that survived the checks, in the two forms rules are matched on. */
export interface CanonicalUri {
  /** Allow rules match this: escapes of unreserved characters decoded, scheme and host lower-cased. */
  readonly canonical: string;
  /** Deny rules match this: fully decoded, case-folded, repeated slashes collapsed. */
  readonly denyForm: string;
}

/** Result of {@link canonicalizeUri}. */
export type UriVerdict = ({ readonly ok: true } & CanonicalUri) | { readonly ok: false; readonly reason: SuspiciousReason };

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

/**
 * Cheap check applied to every URI, governed by a resource rule or not: no control, format,
 * bidi or invisible characters (raw), since those only ever serve to mislead whoever reads a list.
 */
export function suspiciousUriCharacters(uri: string): SuspiciousReason | null {
  if (uri.length === 0) return 'empty';
  if (uri.length > MAX_URI_LENGTH) return 'too_long';
  if (VISIBLE_ASCII.test(uri)) return null;
  return INVISIBLE_OR_CONTROL.test(uri) ? 'invisible_or_control' : null;
}

/**
 * Strict canonicalisation for URIs a resource rule governs. Refuses anything whose meaning an
 * upstream could plausibly resolve differently from the string the rule saw.
 */
export function canonicalizeUri(uri: string): UriVerdict {
  const chars = suspiciousUriCharacters(uri);
  if (chars !== null) return { ok: false, reason: chars };
  if (uri.includes('\\')) return { ok: false, reason: 'backslash' };
  if (!VISIBLE_ASCII.test(uri)) {
    if (uri.normalize('NFC') !== uri) return { ok: false, reason: 'not_nfc' };
    if (uri.normalize('NFKC') !== uri) return { ok: false, reason: 'compatibility_form' };
  }
  const normalised = normalisePercent(uri, true);
  if (typeof normalised !== 'string') return { ok: false, reason: normalised.reason };
  const canonical = lowerSchemeAndHost(normalised);

  let decoded: string;
  try {
    decoded = decodeURIComponent(canonical);
  } catch {
    return { ok: false, reason: 'bad_percent_encoding' };
  }
  // What the escapes spelled must pass the same character checks as raw text would have.
  if (decoded !== canonical) {
    if (INVISIBLE_OR_CONTROL_DECODED.test(decoded)) return { ok: false, reason: 'invisible_or_control' };
    if (decoded.normalize('NFKC') !== decoded) return { ok: false, reason: 'compatibility_form' };
  }
  if (hasDotSegment(decoded)) return { ok: false, reason: 'dot_segment' };
  return { ok: true, canonical, denyForm: denyFormOf(decoded) };
}

/**
 * The same normalisation for a rule's pattern, never refusing: a pattern that spells something
 * requests can't carry (an encoded `/`) simply never matches.
 */
export function canonicalizeUriPattern(pattern: string): CanonicalUri {
  const normalised = normalisePercent(pattern, false);
  const canonical = lowerSchemeAndHost(typeof normalised === 'string' ? normalised : pattern);
  let decoded = canonical;
  try {
    decoded = decodeURIComponent(canonical);
  } catch {
    // keep the undecoded text; it can still match literally
  }
  return { canonical, denyForm: denyFormOf(decoded) };
}

function normalisePercent(s: string, strict: boolean): string | { reason: SuspiciousReason } {
  if (!s.includes('%')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = s.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
      if (strict) return { reason: 'bad_percent_encoding' };
      out += c;
      continue;
    }
    const byte = Number.parseInt(hex, 16);
    const ch = String.fromCharCode(byte);
    if (strict && (byte < 0x20 || byte === 0x7f || ch === '%' || ch === '/' || ch === '\\')) {
      return { reason: 'suspicious_encoding' };
    }
    out += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  return out;
}

function lowerSchemeAndHost(s: string): string {
  const m = SCHEME.exec(s);
  if (m === null) return s;
  const scheme = m[1]!.toLowerCase();
  let rest = s.slice(m[0].length);
  if (rest.startsWith('//')) {
    const end = rest.slice(2).search(/[/?#]/);
    const authorityEnd = end < 0 ? rest.length : end + 2;
    rest = rest.slice(0, authorityEnd).toLowerCase() + rest.slice(authorityEnd);
  }
  return `${scheme}:${rest}`;
}

function hierarchicalPart(s: string): string {
  const end = s.search(/[?#]/);
  return end < 0 ? s : s.slice(0, end);
}

function hasDotSegment(decoded: string): boolean {
  for (const segment of hierarchicalPart(decoded).split('/')) {
    // `..;x` is how some servers spell `..` with a path parameter.
    const bare = segment.split(';')[0];
    if (bare === '.' || bare === '..') return true;
  }
  return false;
}

function denyFormOf(decoded: string): string {
  const m = SCHEME.exec(decoded);
  let prefix = '';
  let rest = decoded;
  if (m !== null) {
    prefix = m[0];
    rest = decoded.slice(m[0].length);
    if (rest.startsWith('//')) {
      const end = rest.slice(2).search(/[/?#]/);
      const authorityEnd = end < 0 ? rest.length : end + 2;
      prefix += rest.slice(0, authorityEnd);
      rest = rest.slice(authorityEnd);
    }
  }
  const q = rest.search(/[?#]/);
  const path = q < 0 ? rest : rest.slice(0, q);
  const tail = q < 0 ? '' : rest.slice(q);
  // Servers commonly treat `a//b` as `a/b`; a deny rule must not be dodged by doubling a slash.
  return foldForDeny(prefix + path.replace(/\/{2,}/g, '/') + tail);
}
