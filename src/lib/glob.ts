/**
 * The one glob engine for every pattern in the config (access policies, tenants, mTLS identities,
 * origins and hosts, rate-limit tool matches): `*` matches any run of characters (including
 * none), `?` exactly one character, everything else is literal.
 *
 * Matching never compiles to a backtracking regular expression: a pattern such as `*a*a*a*b`
 * against a long client-chosen URI would take polynomial time there. The matcher below is the
 * classic single-backtrack-point wildcard algorithm, O(pattern × value) in the worst case, with
 * exact names and `prefix*` patterns (almost every real pattern) answered without it.
 */

/** Options for {@link GlobSet}. */
export interface GlobOptions {
  /**
   * Whether `?` is a wildcard. URIs carry literal `?` (the query delimiter), so URI patterns turn
   * this off and only `*` stays special.
   */
  readonly questionMark?: boolean;
  /** Compare without regard to case (Origin and Host names); patterns and values are lower-cased. */
  readonly caseInsensitive?: boolean;
}

const STAR = 0x2a;
const QUESTION = 0x3f;

/** Length in UTF-16 units of the code point at `i`, so `?` never matches half a surrogate pair. */
function codePointLength(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return 2;
  }
  return 1;
}

/** Whether one glob matches a whole value. */
export function globMatches(pattern: string, value: string, opts: GlobOptions = {}): boolean {
  const q = opts.questionMark ?? true;
  let pi = 0;
  let si = 0;
  let starAt = -1;
  let resumeAt = 0;
  while (si < value.length) {
    if (pi < pattern.length) {
      const pc = pattern.charCodeAt(pi);
      if (pc === STAR) {
        starAt = pi++;
        resumeAt = si;
        continue;
      }
      if (q && pc === QUESTION) {
        si += codePointLength(value, si);
        pi++;
        continue;
      }
      if (pc === value.charCodeAt(si)) {
        pi++;
        si++;
        continue;
      }
    }
    if (starAt < 0) return false;
    // Let the last star swallow one more character and retry from there.
    pi = starAt + 1;
    resumeAt += codePointLength(value, resumeAt);
    si = resumeAt;
  }
  while (pi < pattern.length && pattern.charCodeAt(pi) === STAR) pi++;
  return pi === pattern.length;
}

function hasWildcard(pattern: string, q: boolean): boolean {
  return pattern.includes('*') || (q && pattern.includes('?'));
}

/**
 * A list of globs compiled for repeated tests, built once at config load. Exact names go in a Set,
 * `prefix*` patterns become prefix checks, the rest run through {@link globMatches}.
 */
export class GlobSet {
  private readonly exact: ReadonlyMap<string, number>;
  private readonly prefixes: readonly (readonly [string, number])[];
  private readonly general: readonly (readonly [string, number])[];
  private readonly opts: GlobOptions;
  private readonly fold: boolean;

  constructor(
    readonly patterns: readonly string[],
    opts: GlobOptions = {},
  ) {
    const q = opts.questionMark ?? true;
    this.opts = opts;
    this.fold = opts.caseInsensitive === true;
    const exact = new Map<string, number>();
    const prefixes: [string, number][] = [];
    const general: [string, number][] = [];
    patterns.forEach((given, i) => {
      const p = this.fold ? given.toLowerCase() : given;
      if (!hasWildcard(p, q)) {
        if (!exact.has(p)) exact.set(p, i);
      } else if (p.endsWith('*') && !hasWildcard(p.slice(0, -1), q)) {
        prefixes.push([p.slice(0, -1), i]);
      } else {
        general.push([p, i]);
      }
    });
    this.exact = exact;
    this.prefixes = prefixes;
    this.general = general;
  }

  /** Whether any pattern matches. */
  test(value: string): boolean {
    return this.firstMatch(value) >= 0;
  }

  /** Index of a matching pattern (exact ones first), or -1. */
  firstMatch(given: string): number {
    const value = this.fold ? given.toLowerCase() : given;
    const hit = this.exact.get(value);
    if (hit !== undefined) return hit;
    for (const [prefix, i] of this.prefixes) if (value.startsWith(prefix)) return i;
    for (const [pattern, i] of this.general) if (globMatches(pattern, value, this.opts)) return i;
    return -1;
  }
}
