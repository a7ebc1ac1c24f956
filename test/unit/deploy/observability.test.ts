import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { Metrics } from '../../../src/observability/metrics.js';
import { KNOWN_METHODS, LABEL, METRIC, NONE, OTHER } from '../../../src/observability/names.js';
import type { OperationStatus } from '../../../src/observability/operations.js';

// Checks deploy/observability/ (Prometheus scrape config, alert rules, Grafana dashboard) against
// the metrics the processor really exports: names, types and labels come from names.ts and from
// the text exposition of a `Metrics` instance, so a rename in src/ fails here, not in production.

const DIR = new URL('../../../../deploy/observability/', import.meta.url);
const read = (name: string): string => readFileSync(fileURLToPath(new URL(name, DIR)), 'utf8');

const METRIC_NAMES: ReadonlySet<string> = new Set(Object.values(METRIC));
const LABEL_NAMES: ReadonlySet<string> = new Set(Object.values(LABEL));
const STATUSES = ['success', 'error', 'tool_error', 'cancelled'] as const satisfies readonly OperationStatus[];
// Compile-time: STATUSES lists every OperationStatus.
const statusesComplete: Exclude<OperationStatus, (typeof STATUSES)[number]> extends never ? true : never = true;
void statusesComplete;
/** Grafana's own variables that may appear in a query. */
const GRAFANA_BUILTINS: ReadonlySet<string> = new Set(['__rate_interval', '__interval', '__range']);

// ------------------------------------------------------------------------------------------------
// A small PromQL parser: enough to find every selector (metric name and label matchers) and every
// grouping clause (by/without/on/ignoring/group_left/group_right) together with its scope.

type Tok =
  | { t: 'str'; v: string }
  | { t: 'num'; v: string }
  | { t: 'dur'; v: string }
  | { t: 'id'; v: string }
  | { t: 'op'; v: string };

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const rest = (): string => src.slice(i);
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let v = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && c !== '`') j++;
        v += src[j] ?? '';
        j++;
      }
      if (j >= src.length) throw new Error(`unterminated string in: ${src}`);
      toks.push({ t: 'str', v });
      i = j + 1;
      continue;
    }
    const dur = /^(\d+(ms|[smhdwy]))+/.exec(rest());
    if (dur !== null) {
      toks.push({ t: 'dur', v: dur[0] });
      i += dur[0].length;
      continue;
    }
    const num = /^(0x[0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)/.exec(rest());
    if (num !== null) {
      toks.push({ t: 'num', v: num[0] });
      i += num[0].length;
      continue;
    }
    const id = /^[a-zA-Z_][a-zA-Z0-9_:]*/.exec(rest());
    if (id !== null) {
      toks.push({ t: 'id', v: id[0] });
      i += id[0].length;
      continue;
    }
    const op = /^(=~|!~|!=|==|>=|<=|[-+*/%^=<>(){}[\],:@])/.exec(rest());
    if (op !== null) {
      toks.push({ t: 'op', v: op[0] });
      i += op[0].length;
      continue;
    }
    throw new Error(`unexpected ${JSON.stringify(c)} at ${i} in: ${src}`);
  }
  return toks;
}

interface Matcher {
  readonly label: string;
  readonly op: string;
  readonly value: string;
}

type PromNode =
  | { kind: 'selector'; name: string | null; matchers: Matcher[]; range: boolean }
  | { kind: 'call'; fn: string; args: PromNode[] }
  | { kind: 'agg'; op: string; grouping: string[] | null; without: boolean; args: PromNode[] }
  | { kind: 'binary'; op: string; lhs: PromNode; rhs: PromNode; matching: string[]; include: string[] }
  | { kind: 'literal' };

const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
const PRECEDENCE: Record<string, number> = {
  or: 1,
  and: 2,
  unless: 2,
  '==': 3,
  '!=': 3,
  '<=': 3,
  '<': 3,
  '>=': 3,
  '>': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  atan2: 5,
  '^': 6,
};

class PromParser {
  private pos = 0;
  private readonly toks: Tok[];

  constructor(private readonly src: string) {
    this.toks = tokenize(src);
  }

  parse(): PromNode {
    const node = this.expr(0);
    if (this.pos !== this.toks.length) this.fail('trailing input');
    return node;
  }

  private fail(msg: string): never {
    throw new Error(`${msg} at token ${this.pos} (${JSON.stringify(this.toks[this.pos] ?? 'end')}) in: ${this.src}`);
  }

  private peek(offset = 0): Tok | undefined {
    return this.toks[this.pos + offset];
  }

  private isOp(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t !== undefined && t.t === 'op' && t.v === v;
  }

  private isId(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t !== undefined && t.t === 'id' && t.v === v;
  }

  private next(): Tok {
    const t = this.toks[this.pos++];
    if (t === undefined) this.fail('unexpected end');
    return t;
  }

  private expect(v: string): void {
    if (!this.isOp(v)) this.fail(`expected ${v}`);
    this.pos++;
  }

  private binaryOp(): string | null {
    const t = this.peek();
    if (t === undefined || (t.t !== 'op' && t.t !== 'id')) return null;
    return Object.hasOwn(PRECEDENCE, t.v) ? t.v : null;
  }

  /** Precedence climbing; `^` is right-associative, everything else left. */
  private expr(minPrec: number): PromNode {
    let lhs = this.unary();
    for (;;) {
      const op = this.binaryOp();
      const prec = op === null ? -1 : (PRECEDENCE[op] as number);
      if (op === null || prec < minPrec) return lhs;
      this.pos++;
      if (this.isId('bool')) this.pos++;
      let matching: string[] = [];
      let include: string[] = [];
      if (this.isId('on') || this.isId('ignoring')) {
        this.pos++;
        matching = this.labelList();
      }
      if (this.isId('group_left') || this.isId('group_right')) {
        this.pos++;
        if (this.isOp('(')) include = this.labelList();
      }
      const rhs = this.expr(op === '^' ? prec : prec + 1);
      lhs = { kind: 'binary', op, lhs, rhs, matching, include };
    }
  }

  private unary(): PromNode {
    if (this.isOp('-') || this.isOp('+')) {
      this.pos++;
      return this.unary();
    }
    return this.postfix(this.primary());
  }

  private postfix(node: PromNode): PromNode {
    for (;;) {
      if (this.isOp('[')) {
        this.pos++;
        if (this.next().t !== 'dur') this.fail('expected a duration');
        let subquery = false;
        if (this.isOp(':')) {
          subquery = true;
          this.pos++;
          if (this.peek()?.t === 'dur') this.pos++;
        }
        this.expect(']');
        if (node.kind === 'selector' && !subquery) node = { ...node, range: true };
        else if (!subquery) this.fail('range on a non-selector');
      } else if (this.isId('offset')) {
        this.pos++;
        if (this.isOp('-')) this.pos++;
        if (this.next().t !== 'dur') this.fail('expected an offset duration');
      } else if (this.isOp('@')) {
        this.pos++;
        const t = this.next();
        if (t.t === 'id') {
          this.expect('(');
          this.expect(')');
        } else if (t.t !== 'num') this.fail('expected an @ timestamp');
      } else {
        return node;
      }
    }
  }

  private primary(): PromNode {
    const t = this.next();
    if (t.t === 'num' || t.t === 'str') return { kind: 'literal' };
    if (t.t === 'op' && t.v === '(') {
      const inner = this.expr(0);
      this.expect(')');
      return inner;
    }
    if (t.t === 'op' && t.v === '{') {
      this.pos--;
      return { kind: 'selector', name: null, matchers: this.matchers(), range: false };
    }
    if (t.t !== 'id') this.fail('unexpected token');
    if (AGGREGATIONS.has(t.v) && (this.isOp('(') || this.isId('by') || this.isId('without'))) {
      let grouping: string[] | null = null;
      let without = false;
      const clause = (): void => {
        if (this.isId('by') || this.isId('without')) {
          without = this.isId('without');
          this.pos++;
          grouping = this.labelList();
        }
      };
      clause();
      const args = this.args();
      if (grouping === null) clause();
      return { kind: 'agg', op: t.v, grouping, without, args };
    }
    if (this.isOp('(')) return { kind: 'call', fn: t.v, args: this.args() };
    const matchers = this.isOp('{') ? this.matchers() : [];
    return { kind: 'selector', name: t.v, matchers, range: false };
  }

  private args(): PromNode[] {
    this.expect('(');
    const out: PromNode[] = [];
    while (!this.isOp(')')) {
      out.push(this.expr(0));
      if (!this.isOp(')')) this.expect(',');
    }
    this.pos++;
    return out;
  }

  private labelList(): string[] {
    this.expect('(');
    const out: string[] = [];
    while (!this.isOp(')')) {
      const t = this.next();
      if (t.t !== 'id' && t.t !== 'str') this.fail('expected a label name');
      out.push(t.v);
      if (!this.isOp(')')) this.expect(',');
    }
    this.pos++;
    return out;
  }

  private matchers(): Matcher[] {
    this.expect('{');
    const out: Matcher[] = [];
    while (!this.isOp('}')) {
      const label = this.next();
      if (label.t !== 'id' && label.t !== 'str') this.fail('expected a label name');
      const op = this.next();
      if (op.t !== 'op' || !['=', '!=', '=~', '!~'].includes(op.v)) this.fail('expected a matcher operator');
      const value = this.next();
      if (value.t !== 'str') this.fail('expected a quoted label value');
      out.push({ label: label.v, op: op.v, value: value.v });
      if (!this.isOp('}')) this.expect(',');
    }
    this.pos++;
    return out;
  }
}

interface SelectorUse {
  readonly name: string;
  readonly matchers: readonly Matcher[];
  /** The function the selector is a direct argument of, if any (`rate`, `increase`, ...). */
  readonly parentFn: string | null;
}

interface GroupingUse {
  readonly clause: string;
  readonly labels: readonly string[];
  /** Every named selector the clause applies to. */
  readonly scope: readonly SelectorUse[];
}

interface Analysis {
  readonly selectors: SelectorUse[];
  readonly groupings: GroupingUse[];
}

function analyse(root: PromNode): Analysis {
  const selectors: SelectorUse[] = [];
  const groupings: GroupingUse[] = [];
  const walk = (n: PromNode, parentFn: string | null): SelectorUse[] => {
    switch (n.kind) {
      case 'literal':
        return [];
      case 'selector': {
        const name = n.name ?? n.matchers.find((m) => m.label === '__name__' && m.op === '=')?.value;
        if (name === undefined) return [];
        const use = { name, matchers: n.matchers, parentFn };
        selectors.push(use);
        return [use];
      }
      case 'call':
        return n.args.flatMap((a) => walk(a, n.fn));
      case 'agg': {
        const scope = n.args.flatMap((a) => walk(a, null));
        if (n.grouping !== null) groupings.push({ clause: `${n.op} ${n.without ? 'without' : 'by'}`, labels: n.grouping, scope });
        return scope;
      }
      case 'binary': {
        const scope = [...walk(n.lhs, null), ...walk(n.rhs, null)];
        if (n.matching.length > 0) groupings.push({ clause: `${n.op} on/ignoring`, labels: n.matching, scope });
        if (n.include.length > 0) groupings.push({ clause: `${n.op} group_left/right`, labels: n.include, scope });
        return scope;
      }
    }
  };
  walk(root, null);
  return { selectors, groupings };
}

/** Replaces Grafana's interval variables (outside strings) with a duration PromQL accepts. */
function grafanaToPromql(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m');
}

function parsePromql(expr: string): Analysis {
  return analyse(new PromParser(grafanaToPromql(expr)).parse());
}

// ------------------------------------------------------------------------------------------------
// The processor's real exposition: series name -> Prometheus type and label names.

interface SeriesInfo {
  readonly type: string;
  readonly labels: ReadonlySet<string>;
}

async function exportedSeries(): Promise<Map<string, SeriesInfo>> {
  const m = new Metrics({ processMetrics: false });
  m.operation({ method: 'tools/call', server: 'alpha', tool: 'echo', tenant: NONE, status: 'success' }, 0.02, 512);
  m.serverHealth('alpha', true, 0.001);
  m.rateLimitedInc('alpha', NONE, 'requests');
  m.authFailureInc('invalid_token');
  m.nameCollisionsSet('tools', 1);
  m.filterDecisionInc('context', 'alpha', 'added');
  m.cacheLookupInc('alpha', 'resources/read', 'hit');
  m.cacheInvalidationInc('alpha', 'resource_updated');
  m.toolDriftInc('alpha', 'withheld');
  m.toolsFlaggedSet('alpha', 'shadowing', 1);
  m.configLoaded('sha256:0123456789abcdef', Date.now());
  m.configReloadInc('applied');
  m.configReloadInc('refused');
  m.xdsStreamsSet(1);
  m.xdsRejectedInc('route');
  const { body } = await m.render();
  const types = new Map<string, string>();
  const out = new Map<string, { type: string; labels: Set<string> }>();
  for (const line of body.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    assert.ok(series !== null, `unparsable exposition line: ${line}`);
    const name = series[1] as string;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const familyType = types.get(family);
    assert.ok(familyType !== undefined, `no # TYPE for ${name}`);
    // Histogram parts behave as counters in PromQL.
    const info = out.get(name) ?? { type: familyType === 'histogram' ? 'counter' : familyType, labels: new Set<string>() };
    for (const l of (series[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) info.labels.add(l[1] as string);
    out.set(name, info);
  }
  for (const name of METRIC_NAMES) assert.ok(types.has(name), `${name} is missing from the exposition: exercise it in exportedSeries()`);
  return out;
}

// ------------------------------------------------------------------------------------------------
// The three files.

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}
interface Target {
  refId?: unknown;
  expr?: unknown;
  datasource?: { type?: unknown; uid?: unknown };
}
interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: GridPos;
  datasource?: { type?: unknown; uid?: unknown };
  targets?: Target[];
  panels?: Panel[];
  collapsed?: boolean;
}
interface Variable {
  name?: unknown;
  type?: unknown;
  query?: unknown;
}
interface Dashboard {
  title?: unknown;
  uid?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: Variable[] };
}
interface AlertRule {
  alert?: unknown;
  record?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}
interface RuleFile {
  groups?: { name?: unknown; rules?: AlertRule[] }[];
}
interface ScrapeConfig {
  job_name?: unknown;
  metrics_path?: unknown;
  static_configs?: { targets?: unknown[] }[];
}
interface PrometheusConfig {
  rule_files?: unknown[];
  scrape_configs?: ScrapeConfig[];
}

const dashboard = JSON.parse(read('grafana-dashboard.json')) as Dashboard;
const rules = parseYaml(read('alerts.yml')) as RuleFile;
const prometheus = parseYaml(read('prometheus.yml')) as PrometheusConfig;

/** Every panel, rows' nested panels included (collapsed rows keep theirs under `panels`). */
function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const visit = (ps: Panel[] | undefined): void => {
    for (const p of ps ?? []) {
      out.push(p);
      visit(p.panels);
    }
  };
  visit(d.panels);
  return out;
}

const panels = allPanels(dashboard);
const variables = dashboard.templating?.list ?? [];

function variableQuery(v: Variable): string | null {
  if (typeof v.query === 'string') return v.query;
  if (typeof v.query === 'object' && v.query !== null && typeof (v.query as { query?: unknown }).query === 'string') {
    return (v.query as { query: string }).query;
  }
  return null;
}

interface Source {
  readonly where: string;
  readonly expr: string;
}

const panelExprs: Source[] = panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ where: `panel ${String(p.id)} "${String(p.title)}" ${String(t.refId)}`, expr: String(t.expr) })),
);
const ruleExprs: Source[] = (rules.groups ?? []).flatMap((g) =>
  (g.rules ?? []).map((r) => ({ where: `rule ${String(r.alert ?? r.record)}`, expr: String(r.expr) })),
);

/** `label_values(<selector>, <label>)` variable queries, as a selector plus a grouping label. */
const variableUses: { where: string; selector: string; label: string }[] = variables.flatMap((v) => {
  const q = v.type === 'query' ? variableQuery(v) : null;
  if (q === null) return [];
  const m = /^\s*label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(q);
  assert.ok(m !== null, `variable ${String(v.name)}: unsupported query ${q}`);
  return [{ where: `variable ${String(v.name)}`, selector: m[1] as string, label: m[2] as string }];
});

const allExprs: Source[] = [...panelExprs, ...ruleExprs];

// ------------------------------------------------------------------------------------------------

describe('deploy/observability', () => {
  let series: Map<string, SeriesInfo>;
  before(async () => {
    series = await exportedSeries();
  });

  /** Label names a selector or grouping on `name` may use. */
  function allowedLabels(name: string): ReadonlySet<string> {
    const info = series.get(name);
    assert.ok(info !== undefined, `${name} is not in the processor's exposition`);
    return info.labels;
  }

  /** `labelsOnly`: a label_values() selector, which looks up series and computes nothing. */
  function checkSelectors(where: string, a: Analysis, labelsOnly = false): void {
    for (const s of a.selectors) {
      if (!s.name.startsWith('mcp_')) continue;
      const base = s.name.replace(/_(bucket|count|sum)$/, '');
      assert.ok(METRIC_NAMES.has(base), `${where}: ${s.name} is not a metric in METRIC (names.ts)`);
      assert.ok(series.has(s.name), `${where}: ${s.name} is not a series the processor exports`);
      const info = series.get(s.name) as SeriesInfo;
      for (const m of s.matchers) {
        if (m.label === '__name__') continue;
        const ok = LABEL_NAMES.has(m.label) || (m.label === 'le' && s.name.endsWith('_bucket'));
        assert.ok(ok, `${where}: label ${m.label} on ${s.name} is not in LABEL (names.ts)`);
        assert.ok(info.labels.has(m.label), `${where}: ${s.name} has no label ${m.label} (it has ${[...info.labels].join(', ')})`);
        checkValue(where, m);
      }
      if (labelsOnly) continue;
      if (info.type === 'counter') {
        assert.ok(
          s.parentFn !== null && ['rate', 'irate', 'increase'].includes(s.parentFn),
          `${where}: counter ${s.name} should be used through rate()/irate()/increase()`,
        );
      } else {
        assert.ok(
          s.parentFn === null || !['rate', 'irate', 'increase'].includes(s.parentFn),
          `${where}: ${s.parentFn}() over gauge ${s.name}`,
        );
      }
    }
    for (const g of a.groupings) {
      const mcp = g.scope.filter((s) => s.name.startsWith('mcp_'));
      if (mcp.length > 0) {
        const buckets = mcp.some((s) => s.name.endsWith('_bucket'));
        const carried = new Set(mcp.flatMap((s) => [...allowedLabels(s.name)]));
        for (const l of g.labels) {
          assert.ok(LABEL_NAMES.has(l) || (l === 'le' && buckets), `${where}: ${g.clause} (${l}) over mcp_* metrics: ${l} is not in LABEL (names.ts)`);
          assert.ok(carried.has(l), `${where}: ${g.clause} (${l}): none of ${mcp.map((s) => s.name).join(', ')} has label ${l}`);
        }
      }
      // Grouping histogram buckets without `le` makes histogram_quantile meaningless.
      if (g.clause.endsWith(' by') && g.scope.some((s) => s.name.endsWith('_bucket'))) {
        assert.ok(g.labels.includes('le'), `${where}: ${g.clause} over _bucket series must keep le`);
      }
    }
  }

  /** Literal values of bounded labels must be values the processor can emit. */
  function checkValue(where: string, m: Matcher): void {
    if (m.value.includes('$')) return;
    const regex = m.op === '=~' || m.op === '!~';
    if (regex && !/^[a-z_/]+(\|[a-z_/]+)*$/.test(m.value)) return;
    const values = regex ? m.value.split('|') : [m.value];
    for (const v of values) {
      if (m.label === LABEL.status) {
        assert.ok((STATUSES as readonly string[]).includes(v), `${where}: status="${v}" is never emitted (${STATUSES.join(', ')})`);
      }
      if (m.label === LABEL.method) {
        assert.ok(KNOWN_METHODS.has(v) || v === OTHER, `${where}: mcp_method="${v}" is never emitted`);
      }
    }
  }

  it('every expression parses as PromQL', () => {
    assert.ok(panelExprs.length > 20, `only ${panelExprs.length} panel queries`);
    assert.ok(ruleExprs.length >= 5, `only ${ruleExprs.length} rules`);
    for (const { where, expr } of allExprs) {
      assert.doesNotThrow(() => parsePromql(expr), `${where}: ${expr}`);
    }
  });

  it('every mcp_* metric referenced exists in METRIC, with the labels it really has', () => {
    for (const { where, expr } of allExprs) checkSelectors(where, parsePromql(expr));
    for (const v of variableUses) {
      const a = parsePromql(v.selector);
      checkSelectors(v.where, a, true);
      for (const s of a.selectors.filter((s) => s.name.startsWith('mcp_'))) {
        assert.ok(LABEL_NAMES.has(v.label), `${v.where}: label_values(..., ${v.label}): ${v.label} is not in LABEL`);
        assert.ok(allowedLabels(s.name).has(v.label), `${v.where}: ${s.name} has no label ${v.label}`);
      }
    }
  });

  it('the checker catches a wrong metric, label or grouping', () => {
    const bad: [string, RegExp][] = [
      ['sum(rate(mcp_gateway_request_total[5m]))', /not a metric in METRIC/],
      ['sum(rate(mcp_server_up_bucket[5m]))', /not a series the processor exports/],
      ['sum by (method) (rate(mcp_gateway_requests_total[5m]))', /method is not in LABEL/],
      ['mcp_server_up{tenant="x"}', /has no label tenant/],
      ['histogram_quantile(0.9, sum by (server) (rate(mcp_gateway_request_duration_seconds_bucket[5m])))', /must keep le/],
      ['sum(rate(mcp_gateway_requests_total{status="failed"}[5m]))', /status="failed" is never emitted/],
      ['sum(rate(mcp_gateway_requests_total{mcp_method=~"tools/call|tool/call"}[5m]))', /mcp_method="tool\/call" is never emitted/],
      ['sum(mcp_gateway_auth_failures_total)', /should be used through rate/],
      ['rate(mcp_server_latency_seconds[5m])', /rate\(\) over gauge/],
      ['sum(rate(mcp_gateway_requests_total[5m])) / on (instance) sum(rate(mcp_gateway_requests_total[5m]))', /instance is not in LABEL/],
    ];
    for (const [expr, reason] of bad) assert.throws(() => checkSelectors('probe', parsePromql(expr)), reason, expr);
    checkSelectors('probe', parsePromql('sum by (le, server) (rate(mcp_gateway_request_size_bytes_bucket{mcp_method=~"tools/call|other"}[$__rate_interval]))'));
  });

  it('every METRIC is shown by at least one dashboard panel', () => {
    const used = new Set<string>();
    for (const { expr } of panelExprs) {
      for (const s of parsePromql(expr).selectors) used.add(s.name.replace(/_(bucket|count|sum)$/, ''));
    }
    const missing = [...METRIC_NAMES].filter((n) => !used.has(n));
    assert.deepEqual(missing, [], 'add a panel for these metrics');
  });

  it('panel ids are unique and the layout fits the grid', () => {
    const ids = panels.map((p) => p.id);
    for (const id of ids) assert.ok(Number.isInteger(id) && (id as number) > 0, `panel id ${String(id)}`);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    assert.deepEqual(dup, [], 'duplicate panel ids');
    const boxes: { p: Panel; g: GridPos }[] = [];
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(g !== undefined, `panel ${String(p.id)} has no gridPos`);
      assert.ok(g.x >= 0 && g.w > 0 && g.h > 0 && g.y >= 0 && g.x + g.w <= 24, `panel ${String(p.id)}: gridPos ${JSON.stringify(g)}`);
      boxes.push({ p, g });
    }
    // Panels inside a collapsed row are laid out when it opens; check the visible ones.
    const visible = boxes.filter((b) => (dashboard.panels ?? []).includes(b.p));
    for (const [i, a] of visible.entries()) {
      for (const b of visible.slice(i + 1)) {
        const overlap = a.g.x < b.g.x + b.g.w && b.g.x < a.g.x + a.g.w && a.g.y < b.g.y + b.g.h && b.g.y < a.g.y + a.g.h;
        assert.ok(!overlap, `panels ${String(a.p.id)} and ${String(b.p.id)} overlap`);
      }
    }
  });

  it('is an importable dashboard on a ${datasource} Prometheus variable', () => {
    assert.equal(typeof dashboard.title, 'string');
    assert.equal(typeof dashboard.uid, 'string');
    assert.ok(typeof dashboard.schemaVersion === 'number' && dashboard.schemaVersion >= 36, `schemaVersion ${String(dashboard.schemaVersion)}`);
    const ds = variables.find((v) => v.name === 'datasource');
    assert.ok(ds !== undefined && ds.type === 'datasource' && ds.query === 'prometheus', 'a `datasource` variable of type prometheus');
    for (const name of ['server', 'tenant']) {
      assert.ok(variableUses.some((v) => v.where === `variable ${name}` && v.label === name), `variable ${name} from label_values(..., ${name})`);
    }
    const defined = new Set(variables.map((v) => String(v.name)));
    for (const p of panels) {
      if (p.type === 'row') continue;
      const where = `panel ${String(p.id)} "${String(p.title)}"`;
      assert.equal(typeof p.title, 'string', `${where}: title`);
      assert.equal(p.datasource?.uid, '${datasource}', `${where}: datasource`);
      const targets = p.targets ?? [];
      assert.ok(targets.length > 0, `${where}: no queries`);
      const refIds = targets.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${where}: duplicate refIds`);
      for (const t of targets) {
        assert.ok(typeof t.expr === 'string' && t.expr.trim() !== '', `${where}: empty expr`);
        assert.equal(t.datasource?.uid, '${datasource}', `${where} ${String(t.refId)}: datasource`);
        for (const ref of t.expr.matchAll(/\$\{?(\w+)/g)) {
          const v = ref[1] as string;
          assert.ok(defined.has(v) || GRAFANA_BUILTINS.has(v), `${where}: unknown variable $${v}`);
        }
      }
    }
  });

  it('the alert rules are well formed and cover the essentials', () => {
    const groups = rules.groups ?? [];
    assert.ok(groups.length > 0);
    const all = groups.flatMap((g) => g.rules ?? []);
    const names = all.map((r) => r.alert);
    assert.equal(new Set(names).size, names.length, 'duplicate alert names');
    for (const r of all) {
      assert.ok(typeof r.alert === 'string' && /^[A-Za-z][A-Za-z0-9]*$/.test(r.alert), `alert name ${String(r.alert)}`);
      assert.ok(typeof r.expr === 'string' && r.expr.trim() !== '', `${r.alert}: expr`);
      assert.ok(r.for === undefined || (typeof r.for === 'string' && /^(\d+(ms|[smhdwy]))+$/.test(r.for)), `${r.alert}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(String(r.labels?.severity)), `${r.alert}: severity`);
      assert.ok(typeof r.annotations?.summary === 'string', `${r.alert}: summary`);
      assert.ok(!r.expr.includes('$'), `${r.alert}: Grafana variables in a rule`);
    }
    const uses = (r: AlertRule, metric: string): boolean => parsePromql(String(r.expr)).selectors.some((s) => s.name.startsWith(metric));
    const down = all.find((r) => uses(r, METRIC.serverUp));
    assert.ok(down !== undefined && /==\s*0\b/.test(String(down.expr)) && down.for === '2m', 'server down: mcp_server_up == 0 for 2m');
    assert.ok(all.some((r) => uses(r, METRIC.requestsTotal) && String(r.expr).includes('status="error"')), 'an error-ratio alert');
    assert.ok(all.some((r) => uses(r, `${METRIC.requestDuration}_bucket`) && String(r.expr).includes('histogram_quantile(0.99')), 'a p99 latency alert');
    assert.ok(all.some((r) => uses(r, METRIC.authFailuresTotal)), 'an auth-failure alert');
    assert.ok(all.some((r) => uses(r, METRIC.rateLimitedTotal)), 'a rate-limited alert');
  });

  it('the scrape config has the processor and Envoy jobs the rules and dashboard name', () => {
    const jobs = prometheus.scrape_configs ?? [];
    const jobNames = jobs.map((j) => j.job_name);
    assert.equal(new Set(jobNames).size, jobNames.length, 'duplicate job names');
    const processor = jobs.find((j) => j.metrics_path === '/metrics');
    const envoy = jobs.find((j) => j.metrics_path === '/stats/prometheus');
    assert.ok(processor !== undefined, 'a job for the processor admin /metrics');
    assert.ok(envoy !== undefined, "a job for Envoy's /stats/prometheus");
    for (const j of [processor, envoy]) {
      const targets = (j.static_configs ?? []).flatMap((s) => s.targets ?? []);
      assert.ok(targets.length > 0 && targets.every((t) => typeof t === 'string' && /^[^/\s]+:\d+$/.test(t)), `${String(j.job_name)}: host:port targets`);
    }
    assert.ok((prometheus.rule_files ?? []).includes('alerts.yml'), 'rule_files loads alerts.yml');
    // job="..." in the rules must be a job that exists.
    for (const { where, expr } of ruleExprs) {
      for (const s of parsePromql(expr).selectors) {
        for (const m of s.matchers.filter((m) => m.label === 'job' && m.op === '=')) {
          assert.ok(jobNames.includes(m.value), `${where}: job="${m.value}" is not in prometheus.yml`);
        }
      }
    }
    // The dashboard's job variables default to these jobs.
    const defaults = variables.filter((v) => v.type === 'textbox' && String(v.name).endsWith('_job')).map((v) => v.query);
    assert.ok(defaults.includes(processor.job_name), 'processor_job defaults to the processor job');
    assert.ok(defaults.includes(envoy.job_name), 'envoy_job defaults to the Envoy job');
  });
});
