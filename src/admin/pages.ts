import { stringify as toYaml } from 'yaml';
import type { ConfigChanges, ReloadOutcome } from '../live-config.js';
import { CATALOG_KINDS, type CatalogKind } from '../mcp/protocol.js';
import type { AuditView, CatalogAs, CatalogView, ConfigView, LimitsView, ServersView, SessionsView } from './data.js';
import { ago, badge, bars, html, Html, meter, sparkline, strip, table } from './html.js';

/** The console's pages: each renders the JSON its API serves for it. */

const KIND_TITLES: Readonly<Record<CatalogKind, string>> = { tools: 'Tools', prompts: 'Prompts', resources: 'Resources', resourceTemplates: 'Resource templates' };

function when(iso: string | null | undefined): Html {
  if (iso === null || iso === undefined) return html`<span class="muted">—</span>`;
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}

export function serversPage(v: ServersView): Html {
  const rows = v.servers.map((s) => {
    const changes = s.changes.slice(0, 5).map((c) => html`<div>${when(c.at)} ${c.from} → ${badge(c.to)}${c.error === undefined ? '' : html` <span class="muted">${c.error}</span>`}</div>`);
    const sizes = CATALOG_KINDS.map((k) => `${KIND_TITLES[k].toLowerCase()} ${s.catalog[k] ?? '—'}`).join(' · ');
    return html`<tr data-server="${s.server}"><td><b>${s.server}</b><div class="muted mono">${s.url}</div></td>
<td class="status">${badge(s.status)}</td><td class="latency">${s.latency_ms < 0 ? '—' : `${s.latency_ms} ms`}</td>
<td>${sparkline(s.samples.map((x) => x.latency_ms))}<div>${strip(s.samples.map((x) => x.status))}</div></td><td>${when(s.last_check)}<div class="muted">${s.consecutive_failures} failed in a row</div></td>
<td class="last-error">${s.last_error ?? html`<span class="muted">none</span>`}</td><td class="catalog">${sizes}</td><td class="history">${changes.length === 0 ? html`<span class="muted">no change yet</span>` : changes}</td></tr>`;
  });
  return html`<p class="muted">Active health checks (MCP ping over the gateway's own session) of this replica; the history is this replica's, since the console was turned on.</p>
${table('servers', ['Server', 'Status', 'Latency', 'Recent checks', 'Last check', 'Last error', 'Catalog', 'Up/down history'], rows)}`;
}

export function catalogPage(v: CatalogView, asked: CatalogAs | null, error: string | null): Html {
  const opt = (value: string, chosen: string | undefined) => html`<option value="${value}"${value === chosen ? new Html(' selected') : ''}>${value === '' ? '(any)' : value}</option>`;
  const form = html`<form class="bar" method="get" action="/admin/catalog">
<label>Tenant<select name="tenant">${['', ...v.choices.tenants].map((t) => opt(t, asked?.tenant))}</select></label>
<label>Client<input name="client" list="clients" value="${asked?.client ?? ''}" placeholder="API key id or any client id"><datalist id="clients">${v.choices.clients.map((c) => html`<option value="${c}">`)}</datalist></label>
<label>Groups<input name="groups" value="${asked?.groups?.join(',') ?? ''}" placeholder="comma-separated"></label>
<label>Anonymous<input type="checkbox" name="anonymous"${asked?.anonymous === true ? new Html(' checked') : ''}></label>
<button type="submit">View as this caller</button> <a href="/admin/catalog">everything</a></form>`;
  const summary =
    v.as === null
      ? html`<div class="note">Every entry of every server, as /mcp names them. Choose a tenant or a client to see what its lists hold after policy.</div>`
      : html`<div class="note" id="viewing-as">Seen as tenant <b>${v.as.tenant ?? '(none)'}</b>, client <b>${v.as.client ?? '(anonymous)'}</b> (${v.as.method}${v.as.groups.length > 0 ? `, groups ${v.as.groups.join(', ')}` : ''}): its lists hold
${CATALOG_KINDS.map((k) => `${v.visible[k]} ${KIND_TITLES[k].toLowerCase()}`).join(', ')}.</div>`;
  const sections = v.servers.map((s) => {
    const rows = CATALOG_KINDS.flatMap((k) =>
      s.entries[k].map(
        (e) => html`<tr data-kind="${k}" data-name="${e.name}" data-visible="${e.visible ? 'yes' : 'no'}"><td>${KIND_TITLES[k]}</td><td class="mono">${e.name}</td>
<td class="mono muted">${e.upstream_name}</td><td>${e.description ?? ''}</td><td>${e.visible ? badge('visible') : html`${badge('hidden')} <span class="muted">${e.hidden_because}</span>`}</td></tr>`,
      ),
    );
    return html`<h2>${s.name}${s.excluded ? html` ${badge('unhealthy')} <span class="muted">left out of lists</span>` : ''}</h2>
${table(`catalog-${s.name}`, ['Kind', 'Name on /mcp', "Server's name", 'Description', 'This caller'], rows, 'no entries (or the server is down)')}`;
  });
  return html`${form}${error === null ? '' : html`<div class="note bad" id="error">${error}</div>`}${summary}${sections}`;
}

export function sessionsPage(v: SessionsView, ended: string | null): Html {
  const tenants = Object.entries(v.per_tenant).sort(([, a], [, b]) => b - a);
  const rows = v.sessions.map(
    (s) => html`<tr data-session="${s.ref}"><td class="mono">${s.ref}</td><td>${s.tenant ?? html`<span class="muted">—</span>`}</td>
<td>${s.client_id ?? html`<span class="muted">anonymous</span>`}<div class="muted">${s.method ?? ''}</div></td><td>${s.client ?? ''}<div class="muted">${s.protocol_version}</div></td>
<td>${ago(s.age_seconds)}</td><td>${ago(s.idle_seconds)}</td>
<td>${s.upstream.length === 0 ? html`<span class="muted">none yet</span>` : s.upstream.map((u) => html`<div>${u.server} <span class="muted">${u.stateless ? 'stateless' : u.protocol_version}</span></div>`)}</td>
<td><form class="inline" method="post" action="/admin/sessions/end"><input type="hidden" name="ref" value="${s.ref}"><button class="danger" type="submit">End</button></form></td></tr>`,
  );
  return html`${ended === null ? '' : html`<div class="note ok" id="ended">Session ${ended} ended: its upstream sessions were closed; its client's next request finds it unknown and starts a new one.</div>`}
<div class="cards"><div class="card"><b id="session-total">${v.total}</b>live sessions (${v.store === 'shared' ? 'every replica' : 'this replica'})</div>
${tenants.map(([t, n]) => html`<div class="card" data-tenant="${t}"><b>${n}</b>${t}</div>`)}</div>
${table('sessions', ['Session', 'Tenant', 'Identity', 'Client', 'Age', 'Idle', 'Upstream sessions', ''], rows, 'no live sessions')}
${v.sessions.length < v.total ? html`<p class="muted">The ${v.sessions.length} most recently used are shown.</p>` : ''}`;
}

export function auditPage(v: AuditView): Html {
  const f = v.filter;
  const opt = (value: string, label: string) => html`<option value="${value}"${value === (f.decision ?? '') ? new Html(' selected') : ''}>${label}</option>`;
  const form = html`<form class="bar" method="get" action="/admin/audit">
<label>Tenant<input name="tenant" value="${f.tenant ?? ''}"></label><label>Client<input name="client" value="${f.client ?? ''}"></label>
<label>Server<input name="server" value="${f.server ?? ''}"></label>
<label>Decision<select name="decision">${opt('', 'any')}${opt('allow', 'allow')}${opt('deny', 'deny')}</select></label>
<button type="submit">Filter</button> <a href="/admin/audit">clear</a></form>`;
  const rows = v.entries.map((e) => {
    const target = e.tool ?? e.prompt ?? e.uri ?? '';
    return html`<tr data-decision="${e.decision}"><td>${when(e.at)}</td><td>${badge(e.decision)}</td><td>${e.reason}${e.detail === null ? '' : html`<div class="muted">${e.detail}</div>`}</td>
<td>${e.tenant ?? ''}</td><td class="client">${e.client_id ?? html`<span class="muted">—</span>`}<div class="muted">${e.auth_method ?? ''}</div></td>
<td>${e.server ?? ''}</td><td class="mono">${e.rpc_method ?? ''}</td><td class="mono">${target}</td><td class="mono muted">${e.trace_id ?? ''}</td></tr>`;
  });
  return html`${form}<p class="muted">The newest of the last ${v.capacity} access decisions this replica took (${v.held} held). Every decision is also an <span class="mono">mcpgw_access</span> log line.</p>
${table('audit', ['Time', 'Decision', 'Reason', 'Tenant', 'Client', 'Server', 'Method', 'Tool / prompt / URI', 'Trace'], rows, 'no decisions match')}`;
}

export function limitsPage(v: LimitsView): Html {
  const near = v.near_empty.map(
    (b) => html`<tr data-bucket="${b.key}"><td>${b.limit}</td><td class="mono">${b.key}</td><td>${meter(b.remaining / b.capacity)} ${b.remaining} of ${b.capacity}</td><td>${when(b.at)}</td><td>${when(b.full_at)}</td></tr>`,
  );
  const refused = v.refused.map(
    (r) => html`<tr data-limit="${r.limit}"><td>${r.limit}</td><td class="refused-total">${r.total}</td><td>${bars(r.minutes.map((m) => m.refused))}<div class="muted">last 60 minutes, one bar per minute</div></td></tr>`,
  );
  return html`<h2>Configured</h2>${v.configured.length === 0 ? html`<p class="muted">No rate limits or quotas are configured.</p>` : html`<ul>${v.configured.map((c) => html`<li>${c}</li>`)}</ul>`}
<h2>Buckets nearest to empty</h2><p class="muted">Buckets with half their capacity or less left, as each one's last decision on this replica left it; a bucket drops off once it is whole again.</p>
${table('near-empty', ['Limit', 'Bucket', 'Left', 'Last spent', 'Whole again'], near, 'no bucket is being spent')}
<h2>Refusals (429) per limit</h2>${table('refusals', ['Limit', 'Refused (1 h)', 'Per minute'], refused, 'no request was refused in the last hour')}`;
}

/** What the config page shows under its form: a validation's verdict, or what applying did. */
export type ConfigResult =
  | { readonly kind: 'valid'; readonly hash: string; readonly changes: ConfigChanges }
  | { readonly kind: 'invalid'; readonly error: string }
  | { readonly kind: 'applied'; readonly outcome: ReloadOutcome };

function changesList(c: ConfigChanges): Html {
  const item = (label: string, names: readonly string[]) => (names.length === 0 ? '' : html`<li>${label}: <span class="mono">${names.join(', ')}</span></li>`);
  const any = c.sectionsChanged.length > 0;
  return html`<ul>${any ? '' : html`<li>no change</li>`}${item('sections changed', c.sectionsChanged)}${item('servers added', c.serversAdded)}${item('servers removed', c.serversRemoved)}
${item('servers changed', c.serversChanged)}${item('take effect only at the next start', c.restartKeys)}</ul>`;
}

export function configPage(v: ConfigView, text: string, result: ConfigResult | null): Html {
  let verdict: Html | string = '';
  if (result?.kind === 'invalid') verdict = html`<div class="note bad" id="verdict" data-valid="no"><b>Not valid</b><pre>${result.error}</pre></div>`;
  if (result?.kind === 'valid') verdict = html`<div class="note ok" id="verdict" data-valid="yes"><b>Valid</b> (${result.hash}). Applying it would change:${changesList(result.changes)}</div>`;
  if (result?.kind === 'applied') {
    const o = result.outcome;
    verdict =
      o.result === 'refused'
        ? html`<div class="note bad" id="verdict" data-applied="no"><b>Refused</b>; the config in force stays.<pre>${o.error}</pre></div>`
        : o.fileError !== undefined
          ? html`<div class="note bad" id="verdict" data-applied="yes" data-file-written="no"><b>In force, but the file was not replaced</b> (${o.fileError}): ${o.hash} runs now, and the file's config returns at the next reload or start.</div>`
          : html`<div class="note ok" id="verdict" data-applied="yes"><b>${o.result === 'applied' ? 'Applied' : 'Unchanged'}</b>: ${o.hash} is in force.</div>`;
  }
  const applyButton = v.apply ? html` <button type="submit" name="action" value="apply">Validate and apply</button>` : html` <span class="muted">Applying from here is off (admin.allow_apply).</span>`;
  return html`<div class="cards"><div class="card"><b class="mono" id="config-hash">${v.hash}</b>config in force</div><div class="card"><b>${when(v.loaded_at)}</b>loaded</div>
<div class="card"><b class="mono">${v.file ?? '(none)'}</b>file</div></div>
<h2>Check a config before applying it</h2>${verdict}
<form method="post" action="/admin/config"><input type="hidden" name="base" value="${v.hash}"><textarea name="text" rows="14" style="width:100%" placeholder="Paste a whole config (YAML or JSON)">${text}</textarea>
<div><button type="submit" name="action" value="validate">Validate</button>${applyButton}</div></form>
<h2>In force (secrets masked)</h2><pre id="config-yaml" class="mono">${toYaml(v.config)}</pre>`;
}
