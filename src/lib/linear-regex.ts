/**
 * A regular expression engine whose running time is linear in the input (times the pattern's
 * size): a Pike VM over a compiled program, every thread advanced in lockstep, so no input can
 * make it backtrack. For patterns operators write (custom PII rules), where JavaScript's own
 * backtracking engine could be made to run for minutes by a client's text.
 *
 * The dialect is JavaScript's, without what needs backtracking or memory of earlier matches:
 * literals, `.`, classes (`[a-z]`, `[^…]`, `\d \w \s` and their negations), escapes, groups
 * (`( … )`, `(?: … )`), alternation, `* + ? {n} {n,} {n,m}` (greedy; `{…}` up to 1000), anchors
 * `^ $` and `\b \B`. Backreferences, lookaround, lazy quantifiers and flags are refused at
 * compile time with an error saying so. Matching is leftmost, greedy within (as JavaScript's for
 * the same pattern, apart from alternation, which prefers the earlier branch as JavaScript does).
 */

type CharTest = (c: number) => boolean;

type Inst =
  | { readonly op: 'char'; readonly test: CharTest }
  | { readonly op: 'split'; x: number; y: number }
  | { readonly op: 'jmp'; x: number }
  | { readonly op: 'assert'; readonly kind: '^' | '$' | 'b' | 'B' }
  | { readonly op: 'match' };

type Node =
  | { readonly t: 'char'; readonly test: CharTest }
  | { readonly t: 'cat'; readonly items: readonly Node[] }
  | { readonly t: 'alt'; readonly options: readonly Node[] }
  | { readonly t: 'rep'; readonly node: Node; readonly min: number; readonly max: number }
  | { readonly t: 'assert'; readonly kind: '^' | '$' | 'b' | 'B' };

const MAX_REPEAT = 1000;
const MAX_PROGRAM = 20_000;

const isDigit: CharTest = (c) => c >= 48 && c <= 57;
const isWord: CharTest = (c) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isSpace: CharTest = (c) => c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0xfeff || c === 0x2028 || c === 0x2029 || (c >= 0x2000 && c <= 0x200a);

export class RegexSyntaxError extends Error {
  override readonly name = 'RegexSyntaxError';
}

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const node = this.alternation();
    if (this.i < this.src.length) throw this.error(`unexpected "${this.src[this.i]}"`);
    return node;
  }

  private error(what: string): RegexSyntaxError {
    return new RegexSyntaxError(`${what} at position ${this.i}`);
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0]! : { t: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') items.push(this.quantified());
    return { t: 'cat', items };
  }

  private quantified(): Node {
    const atom = this.atom();
    const c = this.src[this.i];
    let min: number;
    let max: number;
    if (c === '*') [min, max] = [0, Infinity];
    else if (c === '+') [min, max] = [1, Infinity];
    else if (c === '?') [min, max] = [0, 1];
    else if (c === '{' && /^\{\d+(,\d*)?\}/.test(this.src.slice(this.i))) {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i))!;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT) || max < min) throw this.error('repetition out of range (at most 1000)');
      this.i += m[0].length - 1;
    } else return atom;
    this.i++;
    if (this.src[this.i] === '?') throw this.error('lazy quantifiers are not supported');
    if (atom.t === 'assert') throw this.error('an anchor cannot repeat');
    return { t: 'rep', node: atom, min, max };
  }

  private atom(): Node {
    const c = this.src[this.i]!;
    switch (c) {
      case '(': {
        this.i++;
        if (this.src[this.i] === '?') {
          if (this.src[this.i + 1] !== ':') throw this.error('lookaround and named groups are not supported');
          this.i += 2;
        }
        const inner = this.alternation();
        if (this.src[this.i] !== ')') throw this.error('missing )');
        this.i++;
        return inner;
      }
      case '[':
        return { t: 'char', test: this.charClass() };
      case '.':
        this.i++;
        return { t: 'char', test: (x) => x !== 10 && x !== 13 && x !== 0x2028 && x !== 0x2029 };
      case '^':
      case '$':
        this.i++;
        return { t: 'assert', kind: c };
      case '\\': {
        this.i++;
        const e = this.src[this.i];
        if (e === 'b' || e === 'B') {
          this.i++;
          return { t: 'assert', kind: e };
        }
        return { t: 'char', test: this.escape() };
      }
      case '*':
      case '+':
      case '?':
        throw this.error('nothing to repeat');
      case ')':
        throw this.error('unmatched )');
      default: {
        const code = this.src.charCodeAt(this.i++);
        return { t: 'char', test: (x) => x === code };
      }
    }
  }

  /** After a backslash: one character's test. */
  private escape(): CharTest {
    const e = this.src[this.i++];
    switch (e) {
      case undefined:
        throw this.error('trailing \\');
      case 'd':
        return isDigit;
      case 'D':
        return (x) => !isDigit(x);
      case 'w':
        return isWord;
      case 'W':
        return (x) => !isWord(x);
      case 's':
        return isSpace;
      case 'S':
        return (x) => !isSpace(x);
      case 't':
        return (x) => x === 9;
      case 'n':
        return (x) => x === 10;
      case 'r':
        return (x) => x === 13;
      default:
        if (/[0-9kpPuxc]/.test(e)) throw this.error(`\\${e} is not supported`);
        return ((code) => (x: number) => x === code)(e.charCodeAt(0));
    }
  }

  private charClass(): CharTest {
    this.i++; // [
    const negate = this.src[this.i] === '^';
    if (negate) this.i++;
    const parts: CharTest[] = [];
    let first = true;
    while (this.i < this.src.length && (this.src[this.i] !== ']' || first)) {
      first = false;
      let lo: CharTest | number;
      if (this.src[this.i] === '\\') {
        this.i++;
        const e = this.src[this.i];
        lo = e !== undefined && /[dDwWsS]/.test(e) ? this.escape() : this.escapeCode();
      } else lo = this.src.charCodeAt(this.i++);
      if (typeof lo === 'number' && this.src[this.i] === '-' && this.src[this.i + 1] !== ']' && this.i + 1 < this.src.length) {
        this.i++;
        let hi: number;
        if (this.src[this.i] === '\\') {
          this.i++;
          hi = this.escapeCode();
        } else hi = this.src.charCodeAt(this.i++);
        if (hi < lo) throw this.error('range out of order in class');
        const from = lo;
        parts.push((x) => x >= from && x <= hi);
      } else if (typeof lo === 'number') {
        const code = lo;
        parts.push((x) => x === code);
      } else parts.push(lo);
    }
    if (this.src[this.i] !== ']') throw this.error('missing ]');
    this.i++;
    const any: CharTest = (x) => parts.some((p) => p(x));
    return negate ? (x) => !any(x) : any;
  }

  /** After a backslash in a class: a single character's code. */
  private escapeCode(): number {
    const e = this.src[this.i++];
    if (e === undefined) throw this.error('trailing \\');
    if (e === 't') return 9;
    if (e === 'n') return 10;
    if (e === 'r') return 13;
    if (/[0-9kpPuxcbB]/.test(e)) throw this.error(`\\${e} is not supported in a class`);
    return e.charCodeAt(0);
  }
}

class Compiler {
  readonly prog: Inst[] = [];

  emit(node: Node): void {
    if (this.prog.length > MAX_PROGRAM) throw new RegexSyntaxError('pattern too large (expand {n,m} less)');
    switch (node.t) {
      case 'char':
        this.prog.push({ op: 'char', test: node.test });
        return;
      case 'assert':
        this.prog.push({ op: 'assert', kind: node.kind });
        return;
      case 'cat':
        for (const n of node.items) this.emit(n);
        return;
      case 'alt': {
        const jumps: Inst[] = [];
        node.options.forEach((opt, k) => {
          if (k < node.options.length - 1) {
            const split: Inst = { op: 'split', x: this.prog.length + 1, y: -1 };
            this.prog.push(split);
            this.emit(opt);
            const j: Inst = { op: 'jmp', x: -1 };
            this.prog.push(j);
            jumps.push(j);
            (split as { y: number }).y = this.prog.length;
          } else this.emit(opt);
        });
        for (const j of jumps) (j as { x: number }).x = this.prog.length;
        return;
      }
      case 'rep': {
        for (let k = 0; k < node.min; k++) this.emit(node.node);
        if (node.max === Infinity) {
          // L: split body, out; body; jmp L
          const loop = this.prog.length;
          const split: Inst = { op: 'split', x: loop + 1, y: -1 };
          this.prog.push(split);
          this.emit(node.node);
          this.prog.push({ op: 'jmp', x: loop });
          (split as { y: number }).y = this.prog.length;
        } else {
          const splits: Inst[] = [];
          for (let k = node.min; k < node.max; k++) {
            const split: Inst = { op: 'split', x: this.prog.length + 1, y: -1 };
            this.prog.push(split);
            splits.push(split);
            this.emit(node.node);
          }
          for (const sp of splits) (sp as { y: number }).y = this.prog.length;
        }
        return;
      }
    }
  }
}

/** One match: where it starts and ends (end exclusive). */
export interface Span {
  readonly start: number;
  readonly end: number;
}

export class LinearRegex {
  private readonly prog: readonly Inst[];

  constructor(readonly source: string) {
    const c = new Compiler();
    c.emit(new Parser(source).parse());
    c.prog.push({ op: 'match' });
    this.prog = c.prog;
  }

  /** Every non-overlapping match, leftmost first, each as long as the greedy rules make it. */
  spans(text: string): Span[] {
    const out: Span[] = [];
    let from = 0;
    while (from <= text.length) {
      const m = this.search(text, from);
      if (m === null) break;
      out.push(m);
      from = m.end > m.start ? m.end : m.end + 1;
    }
    return out;
  }

  /** The leftmost match at or after `from`; null when none. */
  search(text: string, from = 0): Span | null {
    const n = this.prog.length;
    let clist: number[] = [];
    let cstart: number[] = [];
    let nlist: number[] = [];
    let nstart: number[] = [];
    const mark = new Int32Array(n).fill(-1);
    let matched: Span | null = null;
    for (let pos = from; pos <= text.length; pos++) {
      // A new thread at this position, lowest priority, while nothing has matched yet.
      if (matched === null) this.add(clist, cstart, mark, pos, 0, pos, text);
      if (clist.length === 0) {
        if (matched !== null) break;
        continue; // nothing alive here (an assertion failed): try the next position
      }
      const c = pos < text.length ? text.charCodeAt(pos) : -1;
      for (let k = 0; k < clist.length; k++) {
        const pc = clist[k]!;
        const inst = this.prog[pc]!;
        if (inst.op === 'match') {
          matched = { start: cstart[k]!, end: pos };
          break; // lower-priority threads are cut
        }
        if (inst.op === 'char' && c >= 0 && inst.test(c)) this.add(nlist, nstart, mark, pos + 1, pc + 1, cstart[k]!, text);
      }
      [clist, nlist] = [nlist, clist];
      [cstart, nstart] = [nstart, cstart];
      nlist.length = 0;
      nstart.length = 0;
    }
    return matched;
  }

  /** Adds a thread and follows its jumps, splits and assertions (in priority order). */
  private add(list: number[], starts: number[], mark: Int32Array, pos: number, pc: number, start: number, text: string): void {
    const stack: number[] = [pc];
    while (stack.length > 0) {
      const at = stack.pop()!;
      if (mark[at] === pos) continue;
      mark[at] = pos;
      const inst = this.prog[at]!;
      switch (inst.op) {
        case 'jmp':
          stack.push(inst.x);
          break;
        case 'split':
          // x first: pushed last.
          stack.push(inst.y, inst.x);
          break;
        case 'assert':
          if (assertHolds(inst.kind, text, pos)) stack.push(at + 1);
          break;
        default:
          list.push(at);
          starts.push(start);
      }
    }
  }
}

function assertHolds(kind: '^' | '$' | 'b' | 'B', text: string, pos: number): boolean {
  switch (kind) {
    case '^':
      return pos === 0;
    case '$':
      return pos === text.length;
    default: {
      const before = pos > 0 && isWord(text.charCodeAt(pos - 1));
      const after = pos < text.length && isWord(text.charCodeAt(pos));
      return (before !== after) === (kind === 'b');
    }
  }
}
