/**
 * The console's HTML building blocks: escaping, the page frame, tables and the small inline SVG
 * charts. Pages are rendered whole on the server; nothing needs JavaScript and nothing is loaded
 * from elsewhere.
 */

/** Text safe inside HTML elements and attribute values. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Markup already escaped (what the helpers return), so it is not escaped twice. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** A template tag that escapes every interpolated value except {@link Html} (arrays are joined). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += piece(v) + strings[i + 1]!;
  });
  return new Html(out);
}

function piece(v: unknown): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(piece).join('');
  if (v === null || v === undefined || v === false) return '';
  return esc(v);
}

export const PAGES = [
  ['servers', 'Servers'],
  ['catalog', 'Catalog'],
  ['sessions', 'Sessions'],
  ['audit', 'Audit'],
  ['limits', 'Limits'],
  ['config', 'Config'],
] as const;
export type PageName = (typeof PAGES)[number][0];

const STYLE = `
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#d9dee5;--bg:#f6f7f9;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--accent:#0b57d0}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;gap:24px;padding:10px 20px;background:#1d2330;color:#fff}
header b{font-size:15px}header nav a{color:#c9d1dc;text-decoration:none;margin-right:14px}header nav a[aria-current]{color:#fff;border-bottom:2px solid #7aa7ff}
header .meta{margin-left:auto;color:#9aa5b4;font-size:12px}
main{padding:16px 20px;max-width:1400px}h1{font-size:18px;margin:4px 0 12px}h2{font-size:15px;margin:18px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);margin-bottom:12px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{background:#eef1f5;font-weight:600;font-size:12px;color:var(--muted)}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff}
.healthy,.allow,.visible{background:var(--ok)}.degraded{background:var(--warn)}.unhealthy,.deny,.hidden{background:var(--bad)}
.muted{color:var(--muted)}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
form.inline{display:inline}form.bar{display:flex;gap:10px;align-items:end;flex-wrap:wrap;margin-bottom:12px;background:#fff;padding:10px;border:1px solid var(--line)}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}input,select,textarea{font:inherit;padding:3px 6px}
button{font:inherit;padding:3px 12px;cursor:pointer}button.danger{color:var(--bad)}
pre{background:#fff;border:1px solid var(--line);padding:10px;overflow:auto;max-height:520px}
.note{padding:8px 12px;border-left:4px solid var(--accent);background:#fff;margin-bottom:12px}.note.bad{border-color:var(--bad)}.note.ok{border-color:var(--ok)}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:12px}.card{background:#fff;border:1px solid var(--line);padding:8px 14px}.card b{display:block;font-size:20px}
`;

/** The page frame: navigation, the replica's config, and the page's content. */
export function page(current: PageName, title: string, meta: string, content: Html): string {
  const nav = PAGES.map(([name, label]) => html`<a href="/admin/${name}"${name === current ? new Html(' aria-current="page"') : ''}>${label}</a>`);
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · MCP Gateway admin</title><style>${new Html(STYLE)}</style></head>
<body><header><b>MCP Gateway</b><nav>${nav}</nav><span class="meta">${meta}</span></header>
<main><h1>${title}</h1>${content}</main></body></html>`}`;
}

/** A table: column titles, then rows of cells (each cell a value or Html). */
export function table(id: string, head: readonly string[], rows: readonly Html[], empty = 'nothing to show'): Html {
  if (rows.length === 0) return html`<p class="muted" id="${id}-empty">${empty}</p>`;
  return html`<table id="${id}"><thead><tr>${head.map((h) => html`<th>${h}</th>`)}</tr></thead><tbody>${rows}</tbody></table>`;
}

export function badge(text: string, kind: string = text): Html {
  return html`<span class="badge ${kind}">${text}</span>`;
}

/** A latency line over recent checks (failed checks as red ticks); empty until a check ran. */
export function sparkline(values: readonly number[], width = 160, height = 28): Html {
  if (values.length === 0) return html`<span class="muted">no checks yet</span>`;
  const ok = values.filter((v) => v >= 0);
  const max = Math.max(1, ...ok);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const points: string[] = [];
  const ticks: string[] = [];
  values.forEach((v, i) => {
    const x = (i * step).toFixed(1);
    if (v < 0) ticks.push(`<line x1="${x}" y1="0" x2="${x}" y2="${height}" stroke="#cf222e" stroke-width="2"/>`);
    else points.push(`${x},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  });
  const line = points.length > 0 ? `<polyline fill="none" stroke="#0b57d0" stroke-width="1.5" points="${points.join(' ')}"/>` : '';
  const label = `latency of the last ${values.length} checks, up to ${Math.round(max)} ms`;
  return new Html(`<svg class="sparkline" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}">${ticks.join('')}${line}</svg>`);
}

/** One block per recent check, coloured by the status it found (the up/down history at a glance). */
export function strip(statuses: readonly string[], width = 160): Html {
  if (statuses.length === 0) return new Html('');
  const w = width / statuses.length;
  const colors: Readonly<Record<string, string>> = { healthy: '#1a7f37', degraded: '#9a6700', unhealthy: '#cf222e' };
  const rects = statuses.map((s, i) => `<rect x="${(i * w).toFixed(1)}" width="${Math.max(1, w - 0.5).toFixed(1)}" height="6" fill="${colors[s] ?? '#999'}"/>`).join('');
  return new Html(`<svg class="strip" width="${width}" height="6" role="img" aria-label="status of the last ${statuses.length} checks">${rects}</svg>`);
}

/** Bars per time slot (e.g. refusals per minute). */
export function bars(values: readonly number[], width = 240, height = 32): Html {
  const max = Math.max(1, ...values);
  const w = width / Math.max(1, values.length);
  const rects = values
    .map((v, i) => (v === 0 ? '' : `<rect x="${(i * w).toFixed(1)}" y="${(height - (v / max) * height).toFixed(1)}" width="${Math.max(1, w - 1).toFixed(1)}" height="${((v / max) * height).toFixed(1)}" fill="#cf222e"/>`))
    .join('');
  return new Html(`<svg class="bars" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="per minute, up to ${max}"><rect width="${width}" height="${height}" fill="#f0f2f5"/>${rects}</svg>`);
}

/** A share as a thin horizontal meter. */
export function meter(share: number): Html {
  const pct = Math.max(0, Math.min(1, share)) * 100;
  const color = pct < 10 ? '#cf222e' : pct < 35 ? '#9a6700' : '#1a7f37';
  return new Html(`<svg width="100" height="10" role="img" aria-label="${pct.toFixed(0)}% left"><rect width="100" height="10" fill="#e6e9ee"/><rect width="${pct.toFixed(1)}" height="10" fill="${color}"/></svg>`);
}

/** Seconds as a short duration (`3h 12m`, `45s`). */
export function ago(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  const h = Math.floor(seconds / 3600);
  return h < 48 ? `${h}h ${Math.floor((seconds % 3600) / 60)}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}
