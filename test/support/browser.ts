/**
 * A real headless Chromium (Debian's `chromium`, installed by scripts/ensure-tools.sh), driven over
 * the Chrome DevTools protocol with Node's own WebSocket: pages load, forms are submitted by real
 * mouse clicks, and screenshots are taken as a person would see the page.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitUntil } from './proc.js';

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

type Listener = (msg: CdpMessage) => void;

/** The browser's command channel (one WebSocket; pages are flattened sessions on it). */
class Cdp {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<Listener>();

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(String(ev.data)) as CdpMessage;
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error !== undefined) p?.reject(new Error(msg.error.message));
        else p?.resolve(msg.result ?? {});
        return;
      }
      for (const l of this.listeners) l(msg);
    });
  }

  static async connect(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true });
    });
    return new Cdp(ws);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) }));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error(`CDP ${method} timed out`));
      }, 20_000).unref();
    });
  }

  /** The next event of `method` on a session that `match` accepts. */
  once(method: string, sessionId: string, match: (params: Record<string, unknown>) => boolean = () => true, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const l: Listener = (msg) => {
        if (msg.method === method && msg.sessionId === sessionId && match(msg.params ?? {})) {
          this.listeners.delete(l);
          clearTimeout(t);
          resolve(msg.params ?? {});
        }
      };
      const t = setTimeout(() => {
        this.listeners.delete(l);
        reject(new Error(`no ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.listeners.add(l);
    });
  }

  on(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  close(): void {
    this.ws.close();
  }
}

export interface PageOptions {
  /** Sent with every request the page makes (e.g. an `Authorization` header). */
  readonly headers?: Record<string, string>;
  /** false: the page runs no script at all (what a no-JavaScript browser sees). */
  readonly javascript?: boolean;
}

/** One tab. */
export class Page {
  private lastStatus = 0;

  constructor(
    private readonly cdp: Cdp,
    private readonly session: string,
  ) {
    cdp.on((msg) => {
      if (msg.sessionId !== session || msg.method !== 'Network.responseReceived') return;
      const p = msg.params as { type?: string; response?: { status?: number } };
      if (p.type === 'Document') this.lastStatus = p.response?.status ?? 0;
    });
  }

  private send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.cdp.send(method, params, this.session);
  }

  /** Loads a URL; resolves with the document's HTTP status once it has loaded. */
  async goto(url: string): Promise<number> {
    const loaded = this.cdp.once('Page.loadEventFired', this.session);
    const nav = await this.send('Page.navigate', { url });
    if (typeof nav['errorText'] === 'string') throw new Error(`navigation to ${url} failed: ${nav['errorText']}`);
    await loaded;
    return this.lastStatus;
  }

  /** Evaluates an expression in the page (DevTools' own evaluation; works with page scripts off). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })) as {
      result?: { value?: T };
      exceptionDetails?: { text?: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails !== undefined) throw new Error(`page evaluation failed: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result?.value as T;
  }

  /** Text of the first element matching a CSS selector (null if none). */
  text(selector: string): Promise<string | null> {
    return this.evaluate<string | null>(`document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`);
  }

  /** Clicks the element with the mouse, as a person would, and waits for the page that follows. */
  async clickAndWait(selector: string): Promise<number> {
    await this.evaluate(`document.querySelector(${JSON.stringify(selector)}).scrollIntoView({block: 'center'})`);
    const box = await this.evaluate<{ x: number; y: number } | null>(
      `(() => { const r = document.querySelector(${JSON.stringify(selector)})?.getBoundingClientRect(); return r ? { x: r.x + r.width / 2, y: r.y + r.height / 2 } : null; })()`,
    );
    if (box === null) throw new Error(`nothing matches ${selector}`);
    const loaded = this.cdp.once('Page.loadEventFired', this.session);
    for (const type of ['mousePressed', 'mouseReleased']) {
      await this.send('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: 1 });
    }
    await loaded;
    return this.lastStatus;
  }

  /** Types text into a field (replacing what it holds). */
  async fill(selector: string, value: string): Promise<void> {
    await this.evaluate(`document.querySelector(${JSON.stringify(selector)}).focus(); document.querySelector(${JSON.stringify(selector)}).value = ''`);
    await this.send('Input.insertText', { text: value });
  }

  /** A PNG of the whole page (not only the viewport), written to `path`. */
  async screenshot(path: string): Promise<void> {
    const shot = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
    writeFileSync(path, Buffer.from(String(shot['data']), 'base64'));
  }
}

/** A headless Chromium with a throwaway profile. */
export class Browser {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly cdp: Cdp,
    private readonly profile: string,
    private readonly output: () => string,
  ) {}

  static async launch(): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), 'mcpgw-chromium-'));
    const args = [
      '--headless=new',
      '--remote-debugging-port=0',
      `--user-data-dir=${profile}`,
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-extensions',
      '--disable-background-networking',
      '--window-size=1400,1000',
      // Root in a container has no user namespaces for the sandbox.
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      'about:blank',
    ];
    // Its own process group: closing ends the renderer and helper processes too.
    const proc = spawn(process.env['CHROMIUM'] ?? 'chromium', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let out = '';
    proc.stderr?.on('data', (c: Buffer) => {
      if (out.length < 64 * 1024) out += c.toString();
    });
    const portFile = join(profile, 'DevToolsActivePort');
    let endpoint = '';
    await waitUntil(
      () => {
        if (proc.exitCode !== null) throw new Error(`chromium exited (${proc.exitCode}): ${out}`);
        try {
          const [port, path] = readFileSync(portFile, 'utf8').split('\n');
          if (port && path) endpoint = `ws://127.0.0.1:${port}${path}`;
        } catch {
          // Not written yet.
        }
        return endpoint !== '';
      },
      { timeoutMs: 30_000, what: 'chromium DevTools endpoint' },
    );
    return new Browser(proc, await Cdp.connect(endpoint), profile, () => out);
  }

  async newPage(opts: PageOptions = {}): Promise<Page> {
    const { targetId } = (await this.cdp.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await this.cdp.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const send = (m: string, p: Record<string, unknown> = {}) => this.cdp.send(m, p, sessionId);
    await send('Page.enable');
    await send('Network.enable');
    await send('Emulation.setDeviceMetricsOverride', { width: 1400, height: 1000, deviceScaleFactor: 1, mobile: false });
    if (opts.headers !== undefined) await send('Network.setExtraHTTPHeaders', { headers: opts.headers });
    if (opts.javascript === false) await send('Emulation.setScriptExecutionDisabled', { value: true });
    return new Page(this.cdp, sessionId);
  }

  /** What the browser wrote to stderr (for failures). */
  logs(): string {
    return this.output();
  }

  async close(): Promise<void> {
    this.cdp.close();
    const group = (signal: NodeJS.Signals): void => {
      try {
        process.kill(-this.proc.pid!, signal);
      } catch {
        // Already gone.
      }
    };
    group('SIGTERM');
    await new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null) resolve();
      else this.proc.once('exit', () => resolve());
      setTimeout(() => resolve(), 5000).unref();
    });
    group('SIGKILL');
    // Helpers may still be writing the profile as they go.
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}
