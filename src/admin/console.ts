import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { readFile } from 'node:fs/promises';
import { ConfigError, envReferences, parseConfig, parseConfigDocument } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { GatewayContext } from '../exchange.js';
import { ConfigReplaceError, configHash, type LiveConfig, type ReloadOutcome } from '../live-config.js';
import type { AuditFilter } from '../observability/recent.js';
import { ADMIN_CHALLENGE, ADMIN_KEY_HEADER, AdminAuth, sameOrigin, type AdminPrincipal } from './auth.js';
import {
  AdminInputError,
  auditView,
  catalogView,
  configView,
  endSession,
  limitsView,
  MASK,
  serversView,
  SessionRefs,
  sessionsView,
  type AdminSources,
  type CatalogAs,
  type SessionView,
} from './data.js';
import { page, PAGES, type Html, type PageName } from './html.js';
import { auditPage, catalogPage, configPage, limitsPage, serversPage, sessionsPage, type ConfigResult } from './pages.js';

/**
 * The admin console and its JSON API on the processor's admin port: `/admin/<page>` (HTML) and
 * `/admin/api/<page>` (JSON, the same data). Off (404) unless `admin.console` is on; every request
 * needs an admin credential (auth.ts); changes (ending a session, applying a config) are logged
 * with the operator who made them and refused from other sites' pages.
 */

/** At most one `admin_denied` line per this long. */
const DENIED_LOG_INTERVAL_MS = 10_000;

/** Largest request body taken (a whole config). */
const MAX_BODY_BYTES = 1024 * 1024;

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
} as const;

/** The JSON API's endpoints, as `GET /admin/api` lists them. */
const API_INDEX = {
  'GET /admin/api/servers': 'health, latency history, last error, catalog sizes and up/down changes per server',
  'GET /admin/api/catalog?tenant=&client=&groups=&anonymous=': 'every catalog entry per server; with a caller, which ones its lists hold and why the others are hidden',
  'GET /admin/api/sessions': 'live sessions: count per tenant, age, idle time, upstream sessions',
  'POST /admin/api/sessions/{ref}/end': 'ends a session and its upstream sessions (also DELETE /admin/api/sessions/{ref})',
  'GET /admin/api/audit?tenant=&client=&server=&decision=&limit=': 'the newest access decisions of the in-memory ring',
  'GET /admin/api/limits': 'configured limits, buckets nearest to empty, refusals per limit per minute',
  'GET /admin/api/config': 'the config in force (secrets masked), its hash and load time',
  'POST /admin/api/config/validate': 'validates a config (the body) and says what applying it would change',
  'POST /admin/api/config/apply?base=': 'validates a config (the body) and puts it in place of the one base names (the hash in force), when admin.allow_apply is on',
};

export class AdminConsole {
  private readonly auths = new WeakMap<GatewayContext, AdminAuth>();
  private readonly refs = new SessionRefs();
  private denied: { count: number; loggedAt: number; timer: NodeJS.Timeout | null; last: { path: string; credential: boolean } | null } = {
    count: 0,
    loggedAt: 0,
    timer: null,
    last: null,
  };

  constructor(
    private readonly live: LiveConfig,
    private readonly log: Logger,
  ) {}

  /** Serves a request under /admin; false for any other path (left to the caller). */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const raw = req.url ?? '/';
    if (!/^\/admin(?:[/?#]|$)/.test(raw)) return false;
    let url: URL;
    try {
      url = new URL(raw, 'http://admin.invalid');
    } catch {
      fail(res, new URL('http://admin.invalid/admin/api'), 400, 'malformed request target');
      return true;
    }
    if (!this.live.context.rc.source.admin.console) {
      fail(res, url, 404, 'not found');
      return true;
    }
    this.serve(req, res, url).catch((err: unknown) => {
      this.log.error({ err, path: url.pathname }, 'admin request failed');
      if (!res.headersSent) fail(res, url, 500, 'internal error; see the processor log');
      else res.end();
    });
    return true;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // One config's view for the whole request, whatever reloads while it waits.
    const context = this.live.context;
    const health = this.live.health;
    let auth = this.auths.get(context);
    if (auth === undefined) {
      auth = new AdminAuth(context.rc.source.admin, context.guard.auth);
      this.auths.set(context, auth);
    }
    const who = await auth.check(req.headers);
    if (who === null) {
      this.noteDenied(url.pathname, req.headers.authorization !== undefined || req.headers[ADMIN_KEY_HEADER] !== undefined);
      res.writeHead(401, { ...SECURITY_HEADERS, 'www-authenticate': ADMIN_CHALLENGE, 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { status: 401, message: 'an admin credential is required (admin.api_keys or a token of an admin group)' } }));
      return;
    }
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD' && !sameOrigin(req.headers)) {
      fail(res, url, 403, 'changes are accepted only from the console itself (cross-site request refused)');
      return;
    }
    const src: AdminSources = { context, health, recent: context.recent };
    const path = url.pathname.replace(/\/+$/, '') || '/admin';
    try {
      if (path.startsWith('/admin/api')) await this.api(req, res, url, path.slice('/admin/api'.length), method, src, who);
      else await this.pages(req, res, url, path.slice('/admin'.length), method, src, who);
    } catch (err) {
      if (!(err instanceof AdminInputError)) throw err;
      fail(res, url, err.status, err.message);
    }
  }

  private async api(req: IncomingMessage, res: ServerResponse, url: URL, path: string, method: string, src: AdminSources, who: AdminPrincipal): Promise<void> {
    const q = url.searchParams;
    const get = (fn: () => unknown): Promise<void> => (method === 'GET' || method === 'HEAD' ? Promise.resolve(fn()).then((v) => json(res, 200, v)) : notAllowed(res, url, 'GET'));
    const session = /^\/sessions\/([^/]+)(\/end)?$/.exec(path);
    switch (true) {
      case path === '':
        return get(() => ({ endpoints: API_INDEX }));
      case path === '/servers':
        return get(() => serversView(src));
      case path === '/catalog':
        return get(() => catalogView(src, catalogAs(q)));
      case path === '/sessions':
        return get(() => sessionsView(src, this.refs));
      case session !== null: {
        const ends = session[2] === undefined ? method === 'DELETE' : method === 'POST';
        if (!ends) return notAllowed(res, url, session[2] === undefined ? 'DELETE' : 'POST');
        return json(res, 200, { ended: await this.endSession(src, session[1]!, who) });
      }
      case path === '/audit':
        return get(() => auditView(src, auditFilter(q), limitParam(q)));
      case path === '/limits':
        return get(() => limitsView(src));
      case path === '/config':
        return get(() => this.configView());
      case path === '/config/validate':
        if (method !== 'POST') return notAllowed(res, url, 'POST');
        return json(res, ...(await this.validated(await body(req))));
      case path === '/config/apply': {
        if (method !== 'POST') return notAllowed(res, url, 'POST');
        const result = await this.apply(await body(req), q.get('base'), who);
        if (result.kind === 'invalid') return json(res, 422, { valid: false, error: result.error });
        return json(res, result.outcome.result === 'refused' ? 422 : 200, result.outcome);
      }
      default:
        throw new AdminInputError(`no such admin API endpoint: ${url.pathname} (GET /admin/api lists them)`, 404);
    }
  }

  private async pages(req: IncomingMessage, res: ServerResponse, url: URL, path: string, method: string, src: AdminSources, who: AdminPrincipal): Promise<void> {
    const q = url.searchParams;
    if (path === '') {
      res.writeHead(303, { ...SECURITY_HEADERS, location: '/admin/servers' }).end();
      return;
    }
    if (path === '/sessions/end') {
      if (method !== 'POST') return notAllowed(res, url, 'POST');
      const form = new URLSearchParams(await body(req));
      const ended = await this.endSession(src, form.get('ref') ?? '', who);
      res.writeHead(303, { ...SECURITY_HEADERS, location: `/admin/sessions?ended=${ended.ref}` }).end();
      return;
    }
    const name = path.slice(1) as PageName;
    if (!PAGES.some(([p]) => p === name)) throw new AdminInputError(`no such page: ${url.pathname}`, 404);
    if (method === 'POST' && name === 'config') {
      const form = new URLSearchParams(await body(req));
      const text = form.get('text') ?? '';
      const result = form.get('action') === 'apply' ? await this.apply(text, form.get('base'), who) : await this.verdict(text);
      return this.html(res, 'config', 'Config', configPage(this.configView(), text, result));
    }
    if (method !== 'GET' && method !== 'HEAD') return notAllowed(res, url, name === 'config' ? 'GET, POST' : 'GET');
    switch (name) {
      case 'servers':
        return this.html(res, name, 'Servers', serversPage(await serversView(src)));
      case 'catalog': {
        const as = catalogAs(q);
        try {
          return this.html(res, name, 'Catalog', catalogPage(await catalogView(src, as), as, null));
        } catch (err) {
          if (!(err instanceof AdminInputError)) throw err;
          return this.html(res, name, 'Catalog', catalogPage(await catalogView(src, null), as, err.message), 400);
        }
      }
      case 'sessions': {
        const ended = q.get('ended');
        return this.html(res, name, 'Sessions', sessionsPage(await sessionsView(src, this.refs), ended !== null && /^[0-9a-f]{16}$/.test(ended) ? ended : null));
      }
      case 'audit':
        return this.html(res, name, 'Audit', auditPage(auditView(src, auditFilter(q), limitParam(q))));
      case 'limits':
        return this.html(res, name, 'Limits', limitsPage(limitsView(src)));
      case 'config':
        return this.html(res, name, 'Config', configPage(this.configView(), '', null));
    }
  }

  /** Ends a session for an operator, and logs who did. */
  private async endSession(src: AdminSources, ref: string, who: AdminPrincipal): Promise<SessionView> {
    const ended = await endSession(src, this.refs, ref);
    this.log.info(
      { event: 'admin_action', action: 'session_end', admin: who.id, admin_method: who.method, session: ended.ref, tenant: ended.tenant, client_id: ended.client_id },
      'session ended from the admin console',
    );
    return ended;
  }

  /**
   * Refusals are logged at most once per interval, with how many there were since the last line
   * (a guessing run is a line per interval, not thousands); a burst's count is written when its
   * interval ends.
   */
  private noteDenied(path: string, credential: boolean): void {
    this.denied.count++;
    this.denied.last = { path, credential };
    const wait = this.denied.loggedAt + DENIED_LOG_INTERVAL_MS - Date.now();
    if (wait <= 0) this.logDenied();
    else if (this.denied.timer === null) {
      this.denied.timer = setTimeout(() => this.logDenied(), wait);
      this.denied.timer.unref();
    }
  }

  private logDenied(): void {
    if (this.denied.timer !== null) clearTimeout(this.denied.timer);
    const { count, last } = this.denied;
    this.denied = { count: 0, loggedAt: Date.now(), timer: null, last: null };
    if (count === 0 || last === null) return;
    this.log.info({ event: 'admin_denied', path: last.path, credential: last.credential, refused: count }, 'admin console: requests without a valid admin credential refused');
  }

  private html(res: ServerResponse, name: PageName, title: string, content: Html, status = 200): void {
    const body = page(name, title, `config ${this.live.hash} · pid ${process.pid}`, content);
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' }).end(body);
  }

  private configView() {
    return configView(this.live.context.rc.source, this.live.hash, this.live.loadedAt, this.live.configFile);
  }

  /** The `${VAR}`s the config file in force uses: all a config sent to the console may use. */
  private async fileEnv(): Promise<Set<string>> {
    const file = this.live.configFile;
    if (file === undefined) return new Set();
    try {
      return envReferences(parseConfigDocument(await readFile(file, 'utf8')));
    } catch {
      return new Set();
    }
  }

  /**
   * A candidate config's verdict: the error naming the field, or what applying it would change.
   * It may use only the `${VAR}`s the config file in force uses (the console is no way to read the
   * rest of the processor's environment), and their values never appear in what it answers.
   */
  private async verdict(text: string): Promise<Verdict> {
    let doc: unknown;
    try {
      doc = parseConfigDocument(text);
    } catch (err) {
      if (err instanceof ConfigError) return { kind: 'invalid', error: err.message };
      throw err;
    }
    // What the config page shows masked is not a value: applying it would store the mask.
    const masked = maskedAt(doc);
    if (masked !== null) return { kind: 'invalid', error: `${masked} holds ${MASK}, a value the config page masks: put the real value (or its \${VAR}) there` };
    const names = envReferences(doc);
    const allowed = await this.fileEnv();
    const foreign = [...names].filter((n) => !allowed.has(n)).map((n) => `\${${n}}`);
    if (foreign.length > 0) {
      return {
        kind: 'invalid',
        error: `a config sent here may use only the \${VAR}s the config file in force uses; ${foreign.join(', ')} ${foreign.length === 1 ? 'is' : 'are'} not among them: add new ones in the file itself`,
      };
    }
    const scrub = envScrubber(names);
    let next: Config;
    try {
      next = parseConfig(doc);
    } catch (err) {
      // Whatever a check threw, it is this candidate's refusal, and it is never logged raw.
      return { kind: 'invalid', error: scrub(err instanceof Error ? err.message : String(err)) };
    }
    return { kind: 'valid', hash: configHash(text), changes: this.live.preview(next), config: next, scrub };
  }

  private async validated(text: string): Promise<[number, unknown]> {
    const v = await this.verdict(text);
    return v.kind === 'invalid' ? [422, { valid: false, error: v.error }] : [200, { valid: true, hash: v.hash, changes: v.changes }];
  }

  /** Applies a candidate in place of the config `base` names (the one it was checked against). */
  private async apply(text: string, base: string | null, who: AdminPrincipal): Promise<ConfigResult & { readonly kind: 'invalid' | 'applied' }> {
    if (!this.live.context.rc.source.admin.allow_apply) throw new AdminInputError('applying a config from the console is off (admin.allow_apply)', 409);
    if (base === null || base === '') throw new AdminInputError(`say which config this one replaces: base=<the hash in force, now ${this.live.hash}>`);
    const v = await this.verdict(text);
    if (v.kind === 'invalid') return v;
    const logged = { event: 'admin_action', action: 'config_apply', admin: who.id, admin_method: who.method, base };
    let outcome: ReloadOutcome;
    try {
      outcome = await this.live.replace(text, v.config, base, v.scrub);
    } catch (err) {
      if (!(err instanceof ConfigReplaceError)) throw err;
      this.log.info({ ...logged, result: 'not_applied', error: err.message }, 'config from the admin console not applied');
      throw new AdminInputError(err.message, 409);
    }
    this.log.info(
      { ...logged, result: outcome.result, config: 'hash' in outcome ? outcome.hash : null, ...(outcome.result !== 'refused' && outcome.fileError !== undefined ? { file_error: outcome.fileError } : {}) },
      'config applied from the admin console',
    );
    return { kind: 'applied', outcome };
  }
}

/** A validated candidate (with what it parses to, and how to keep its env values out of messages), or why it is not valid. */
type Verdict =
  | (ConfigResult & { readonly kind: 'valid' } & { readonly config: Config; readonly scrub: (message: string) => string })
  | (ConfigResult & { readonly kind: 'invalid' });

/** Environment values (and pieces of them) shorter than this are not secrets, and replacing them would garble a message. */
const MIN_SCRUBBED = 4;

/**
 * What keeps the values of the `${VAR}`s a candidate uses out of a message about it: each value,
 * and each run of letters and digits in it (a message may quote part of one), longest first, put
 * back as its `${VAR}`.
 */
function envScrubber(names: ReadonlySet<string>, env: NodeJS.ProcessEnv = process.env): (message: string) => string {
  const pieces: [string, string][] = [];
  for (const name of names) {
    const value = env[name];
    if (value === undefined) continue;
    if (value.length >= MIN_SCRUBBED) pieces.push([value, `\${${name}}`]);
    for (const part of value.split(/[^A-Za-z0-9]+/)) if (part.length >= MIN_SCRUBBED && part !== value) pieces.push([part, `\${${name}}(part)`]);
  }
  pieces.sort(([a], [b]) => b.length - a.length);
  return (message) => pieces.reduce((out, [value, name]) => out.replaceAll(value, name), message);
}

/** Where a config holds the console's mask as a value (a dotted path), or null. */
function maskedAt(value: unknown, path = ''): string | null {
  if (typeof value === 'string') return value.includes(MASK) ? path || '(root)' : null;
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const hit = maskedAt(v, Array.isArray(value) ? `${path}[${k}]` : path === '' ? k : `${path}.${k}`);
      if (hit !== null) return hit;
    }
  }
  return null;
}

function catalogAs(q: URLSearchParams): CatalogAs | null {
  const tenant = q.get('tenant')?.trim() || undefined;
  const client = q.get('client')?.trim() || undefined;
  const groups = (q.get('groups') ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '');
  const anonymous = q.get('anonymous') === 'on' || q.get('anonymous') === 'true';
  if (tenant === undefined && client === undefined && groups.length === 0 && !anonymous) return null;
  return {
    ...(tenant === undefined ? {} : { tenant }),
    ...(client === undefined ? {} : { client }),
    ...(groups.length === 0 ? {} : { groups }),
    ...(anonymous ? { anonymous } : {}),
  };
}

function auditFilter(q: URLSearchParams): AuditFilter {
  const decision = q.get('decision') || undefined;
  if (decision !== undefined && decision !== 'allow' && decision !== 'deny') throw new AdminInputError('decision is allow or deny');
  const f: { -readonly [K in keyof AuditFilter]: AuditFilter[K] } = {};
  for (const k of ['tenant', 'client', 'server'] as const) {
    const v = q.get(k)?.trim();
    if (v) f[k] = v;
  }
  if (decision !== undefined) f.decision = decision;
  return f;
}

function limitParam(q: URLSearchParams): number | undefined {
  const v = q.get('limit');
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new AdminInputError('limit is a positive integer');
  return n;
}

function body(req: IncomingMessage): Promise<string> {
  const tooLarge = (): AdminInputError => new AdminInputError(`request body over ${MAX_BODY_BYTES} bytes`, 413);
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(c);
        return;
      }
      // The rest is read and dropped, so the answer (413) reaches the client.
      req.off('data', onData);
      req.resume();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json' }).end(JSON.stringify(value));
}

/** An error: JSON on the API, a short page elsewhere. */
function fail(res: ServerResponse, url: URL, status: number, message: string): void {
  // A body left unread is not waited for: the connection ends with the answer.
  if (status === 413) res.setHeader('connection', 'close');
  if (url.pathname.startsWith('/admin/api')) {
    json(res, status, { error: { status, message } });
    return;
  }
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
}

function notAllowed(res: ServerResponse, url: URL, allow: string): Promise<void> {
  res.setHeader('allow', allow);
  fail(res, url, 405, `method not allowed here; use ${allow}`);
  return Promise.resolve();
}
