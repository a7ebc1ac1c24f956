import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { stringify } from 'yaml';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { parseConfig } from '../../src/config/load.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { PROCESSOR_HEALTH_CHECK } from '../../src/envoy/contract.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { startDualEraServer, type DualEraServer } from '../fixtures/mcp-servers/dual-era-server.js';
import { startEnvoy, type EnvoyHandle } from '../support/envoy.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { freePorts } from '../support/ports.js';
import { waitUntil } from '../support/proc.js';
import { RedisServer } from '../support/redis.js';
import { Replica, waitForProcessorHosts as waitForProcessorHostsIn } from '../support/replica.js';
import { Traffic } from '../support/traffic.js';

const ADMIN_KEY = 'mcpgw_replicas_console_key_0123';

function textOf(result: object): string {
  return ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('');
}

describe('two processor replicas behind one Envoy, state in Redis', () => {
  let redis: RedisServer;
  let alpha: DemoServer;
  let nova: DualEraServer;
  let envoy: EnvoyHandle;
  let replicas: Replica[];
  let dir: string;
  let mcpUrl = '';
  let passthroughUrl = '';
  let envoyAdmin = '';

  before(async () => {
    redis = await RedisServer.start();
    alpha = await startDemoServer({ name: 'alpha' });
    nova = await startDualEraServer('nova', { legacy: 'reject', subscribe: true });
    const [listen, internal, envoyAdminPort, g1, g2, a1, a2] = await freePorts(7);
    const config = parseConfig({
      gateway: {
        listen: `127.0.0.1:${listen}`,
        internal: `127.0.0.1:${internal}`,
        envoy_admin: `127.0.0.1:${envoyAdminPort}`,
        processor: [`127.0.0.1:${g1}`, `127.0.0.1:${g2}`],
        admin: `127.0.0.1:${a1}`,
        // Short, so that a hung replica's requests time out within the test (Envoy's message
        // timeout is upstream_timeout + 5 s).
        upstream_timeout: '1s',
      },
      servers: { alpha: { url: alpha.url }, nova: { url: nova.url } },
      rate_limits: { alpha: { requests_per_minute: 6000, burst_size: 6000, tools: [{ match: 'add', requests_per_minute: 1, burst_size: 20 }] } },
      redis: { url: redis.url, timeout: '200ms', limits_on_error: 'fail-open' },
      logging: { operations: false },
      admin: { console: true, api_keys: [{ id: 'oncall', key_sha256: sha256Hex(ADMIN_KEY) }] },
    });
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-replicas-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, stringify(config));
    replicas = [new Replica(file, `127.0.0.1:${g1}`, `127.0.0.1:${a1}`), new Replica(file, `127.0.0.1:${g2}`, `127.0.0.1:${a2}`)];
    await Promise.all(replicas.map((r) => r.start()));
    envoy = await startEnvoy(renderEnvoyBootstrap(config));
    envoyAdmin = envoy.adminUrl;
    mcpUrl = `http://127.0.0.1:${listen}/mcp`;
    passthroughUrl = `http://127.0.0.1:${listen}/servers/alpha/mcp`;
    await waitForProcessorHosts(2);
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await alpha?.close();
    await nova?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function waitForProcessorHosts(n: number): Promise<void> {
    await waitForProcessorHostsIn(envoyAdmin, n);
  }

  it('enforces one shared limit exactly across both replicas', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    const before = await Promise.all(replicas.map((r) => r.requestsServed()));
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        rawRequest(mcpUrl, {
          headers: { 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__add', arguments: { a: i, b: 1 } } },
        }),
      ),
    );
    const after = await Promise.all(replicas.map((r) => r.requestsServed()));
    assert.ok(after[0]! > before[0]! && after[1]! > before[1]!, `both replicas served: ${JSON.stringify({ before, after })}`);
    const statuses = results.map((r) => r.status);
    const odd = results.find((r) => r.status !== 200 && r.status !== 429);
    assert.equal(odd, undefined, odd?.text);
    assert.equal(statuses.filter((s) => s === 200).length, 20, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 40);
  });

  it('serves a session from either replica, survives one being killed and restarted', async () => {
    const c = await connectClient(mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'one' } })), 'alpha: one');
      await replicas[0]!.killed();
      // What a kill costs while Envoy learns of it is the next test's subject; here, the session
      // must go on once Envoy has.
      await waitForProcessorHosts(1);
      await settled();
      for (let i = 0; i < 8; i++) {
        assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: `k${i}` } })), `alpha: k${i}`);
      }
      await replicas[0]!.start();
      await waitForProcessorHosts(2);
      // Now take the other one away: the restarted replica alone must carry the old session.
      await replicas[1]!.killed();
      await waitForProcessorHosts(1);
      await settled();
      const served = await replicas[0]!.requestsServed();
      for (let i = 0; i < 8; i++) {
        assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: `r${i}` } })), `alpha: r${i}`);
      }
      assert.ok((await replicas[0]!.requestsServed()) >= served + 8, 'the restarted replica served the old session');
      await replicas[1]!.start();
      await waitForProcessorHosts(2);
    } finally {
      await c.close();
      for (const r of replicas) if (!r.running) await r.start();
      await waitForProcessorHosts(2);
    }

    /** Until ten pings in a row pass: Envoy has stopped picking the dead replica. */
    async function settled(): Promise<void> {
      let streak = 0;
      await waitUntil(
        async () => {
          streak = (await c.client.ping().then(() => true, () => false)) ? streak + 1 : 0;
          return streak >= 10;
        },
        { timeoutMs: 10_000, what: 'calls to pass again after the kill' },
      );
    }
  });

  it('a replica killed under load costs only requests in flight on it, each a JSON-RPC error', async (t) => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    const workers = 8;
    for (const cycle of [0, 1, 0]) {
      const traffic = new Traffic(
        mcpUrl,
        sid,
        (i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: `c${i}` } } }),
        { workers, gapMs: 0, timeoutMs: 10_000 },
      );
      try {
        // Steady load on both replicas first, so the kill lands on streams in flight.
        await waitUntil(() => traffic.outcomes.length >= 200, { timeoutMs: 20_000, what: 'load before the kill' });
        const killedAt = Date.now();
        const goneAt = await replicas[cycle]!.killed();
        await waitForProcessorHosts(1);
        // Envoy has the replica out (ejected on a refused connection, or marked by its health check).
        const marked = Date.now();
        await waitUntil(() => traffic.since(marked + 1_000).length >= 200, { timeoutMs: 20_000, what: 'load after the kill' });
        await traffic.stop();

        const failed = traffic.outcomes.filter((o) => o.status !== 200);
        // What was on the replica when it was killed may fail (at most one per worker: each has
        // one request out at a time; Envoy replays the streams the replica had not answered at
        // all). Requests sent while it dies, or just after, may meet it too: for no longer than
        // the health-check interval, since Envoy ejects it on its first refused connection
        // (usually at once; on a busy machine a request sent a few ms after the death has been
        // seen to fail), and nothing sent later fails. When this process learns of the exit can
        // lag the exit itself on a busy machine, so only the kill's own time bounds "in flight".
        const inFlight = failed.filter((o) => o.at < killedAt);
        const afterGone = failed.filter((o) => o.at >= goneAt);
        const late = failed.filter((o) => o.at >= goneAt + PROCESSOR_HEALTH_CHECK.intervalMs);
        t.diagnostic(
          `kill ${cycle}: ${traffic.outcomes.length} requests, ${inFlight.length} failed in flight, ${failed.length - inFlight.length - afterGone.length} sent while it died, ${afterGone.length} sent after it was gone; ` +
            `Envoy had it out ${marked - goneAt} ms after it was gone (health-check interval ${PROCESSOR_HEALTH_CHECK.intervalMs} ms)`,
        );
        let where = `cycle ${cycle}: ${JSON.stringify(failed)}`;
        if (late.length > 0 || inFlight.length > workers) {
          const stats = (await (await fetch(`${envoyAdmin}/stats`)).text()).split('\n').filter((l) => l.includes('mcpgw_processor') && /retry|cx_connect_fail|health_check|outlier/.test(l));
          where += `\ndying for ${goneAt - killedAt} ms; sent after the replica was gone (ms): ${failed.map((o) => o.at - goneAt).join(',')}\n${stats.join('\n')}`;
        }
        assert.ok(inFlight.length <= workers, where);
        assert.equal(late.length, 0, where);
        // The check is no slower than its own timeout, however busy the machine.
        assert.ok(marked - goneAt < PROCESSOR_HEALTH_CHECK.intervalMs + PROCESSOR_HEALTH_CHECK.timeoutMs + 1_000, where);
        for (const o of failed) {
          // A response already streaming when its replica died can only be cut off: its status is
          // on the wire. Everything else is the processor-unavailable JSON-RPC error.
          if (o.status === 0) {
            assert.match(o.message, /terminated|closed|reset|hang up/i, where);
            continue;
          }
          assert.equal(o.status, 503, where);
          assert.equal(o.rpcCode, -32000, where);
          assert.match(o.message, /processor/i, where);
        }
      } finally {
        await traffic.stop();
        // Whatever happened, the next test starts with both replicas.
        if (!replicas[cycle]!.running) await replicas[cycle]!.start();
        await waitForProcessorHosts(2);
      }
    }
  });

  it('a hung replica costs the requests it holds a JSON-RPC 504, not a hang', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    replicas[1]!.pause();
    try {
      // Round robin puts some of these on the frozen replica before anything can notice.
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          rawRequest(mcpUrl, {
            headers: { 'mcp-session-id': sid },
            body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'h' } } },
            timeoutMs: 30_000,
          }),
        ),
      );
      const stuck = answers.filter((r) => r.status !== 200);
      assert.ok(stuck.length > 0, 'some requests met the frozen replica');
      for (const r of stuck) {
        assert.equal(r.status, 504, r.text);
        assert.equal((r.json as { error: { code: number } }).error.code, -32000, r.text);
        assert.match((r.json as { error: { message: string } }).error.message, /processor did not answer/, r.text);
      }
    } finally {
      replicas[1]!.resume();
    }
    await waitForProcessorHosts(2);
  });

  it('a cancellation that lands on a replica not running the call still reaches the server', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    // The call runs through replica 0 (the only one up when it starts) ...
    replicas[1]!.kill();
    await waitForProcessorHosts(1);
    const done = new AbortController();
    const call = rawRequest(mcpUrl, {
      headers: { 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 'long-call', method: 'tools/call', params: { name: 'alpha__slow_progress', arguments: { seconds: 60, steps: 0 } } },
      timeoutMs: 90_000,
      signal: done.signal,
    }).catch((e: Error) => e);
    const before = alpha.cancellations();
    await replicas[1]!.start();
    await waitForProcessorHosts(2);
    // ... which then hangs, so only replica 1 can act on the cancellation.
    replicas[0]!.pause();
    try {
      const cancel = (): Promise<unknown> =>
        rawRequest(mcpUrl, {
          headers: { 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'long-call', reason: 'changed my mind' } },
          timeoutMs: 2_000,
        }).catch(() => undefined);
      // Round robin sends at least one of each pair to replica 1.
      await waitUntil(
        async () => {
          await Promise.all([cancel(), cancel()]);
          return alpha.cancellations() > before;
        },
        { timeoutMs: 20_000, what: 'the upstream to see the cancellation' },
      );
    } finally {
      replicas[0]!.resume();
    }
    assert.equal(alpha.cancellations(), before + 1);
    // A cancelled request gets no answer (MCP): the client stops waiting for it.
    done.abort();
    await call;
    await waitForProcessorHosts(2);
  });

  it('a 2026-07-28 client’s retry reaches the replica holding its call wherever it lands; once that replica is gone, the state is refused', async () => {
    const call = (id: number, extra: Record<string, unknown> = {}) =>
      rawRequest(mcpUrl, {
        headers: { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'alpha__elicit' },
        body: {
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: {
            name: 'alpha__elicit',
            arguments: { question: 'Which replica?' },
            _meta: {
              'io.modelcontextprotocol/protocolVersion': '2026-07-28',
              'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } },
              'io.modelcontextprotocol/clientInfo': { name: 'replicas', version: '1' },
            },
            ...extra,
          },
        },
      });
    const asked = (r: Awaited<ReturnType<typeof call>>): { key: string; state: string } => {
      const result = (r.json as { result?: { resultType?: string; inputRequests?: Record<string, { params: { message: string } }>; requestState?: string } }).result;
      assert.equal(result?.resultType, 'input_required', r.text);
      const [key, q] = Object.entries(result.inputRequests ?? {})[0]!;
      assert.equal(q.params.message, 'Which replica?');
      return { key, state: result.requestState! };
    };
    for (const holder of [0, 1]) {
      const other = replicas[1 - holder]!;
      // The call starts while only the holder runs ...
      await other.killed();
      await waitForProcessorHosts(1);
      let q = asked(await call(1));
      await other.start();
      await waitForProcessorHosts(2);
      // ... and its retries (each answering nothing, so asked again) go wherever Envoy sends them.
      let relayed = 0;
      for (let i = 0; i < 10 && relayed === 0; i++) {
        const before = await other.requestsServed();
        q = asked(await call(2 + i, { inputResponses: {}, requestState: q.state }));
        if ((await other.requestsServed()) > before) relayed++;
      }
      assert.ok(relayed > 0, `replica ${1 - holder} served a retry of the call replica ${holder} holds`);
      if (holder === 0) {
        const done = await call(20, { inputResponses: { [q.key]: { action: 'accept', content: { answer: 'either' } } }, requestState: q.state });
        assert.equal(textOf((done.json as { result: object }).result), 'alpha elicited: either', done.text);
        continue;
      }
      // The holder ends: its calls end with it, and their states are refused wherever retried.
      await replicas[holder]!.killed();
      await waitForProcessorHosts(1);
      const late = await call(21, { inputResponses: { [q.key]: { action: 'decline' } }, requestState: q.state });
      assert.equal((late.json as { error?: { code: number } }).error?.code, -32602, late.text);
      await replicas[holder]!.start();
      await waitForProcessorHosts(2);
    }
  });

  it('asks a session-based client what a 2026-07-28 server asks, its answers, resumed stream and retry landing on either replica', async () => {
    const asked: string[] = [];
    const c = await connectClient(mcpUrl, {
      onElicitation: async (params) => {
        asked.push(params.message);
        return { action: 'accept', content: { confirm: true } };
      },
    });
    try {
      const before = await Promise.all(replicas.map((r) => r.requestsServed()));
      for (const env of ['a', 'b', 'c', 'd']) {
        assert.equal(textOf(await c.client.callTool({ name: 'nova__deploy', arguments: { env } })), `nova: deployed to ${env}`);
      }
      assert.deepEqual(asked, ['Deploy to a?', 'Deploy to b?', 'Deploy to c?', 'Deploy to d?']);
      const after = await Promise.all(replicas.map((r) => r.requestsServed()));
      assert.ok(after[0]! > before[0]! && after[1]! > before[1]!, `both replicas served parts of it: ${JSON.stringify({ before, after })}`);
    } finally {
      await c.close();
    }
  });

  it('carries the updates of a 2026-07-28 server’s resources to a session-based client’s stream, whichever replica took its subscribe', async () => {
    const c = await connectClient(mcpUrl);
    const heard = new Set<string>();
    c.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void heard.add(n.params.uri));
    try {
      const before = await Promise.all(replicas.map((r) => r.requestsServed()));
      for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) {
        await c.client.subscribeResource({ uri: `nova+note://${name}` });
        // Well inside the stream's own look at its session (every 15 s): the replica that took the
        // subscribe told the one holding the stream.
        await waitUntil(
          () => {
            nova.updateResource(`note://${name}`);
            return heard.has(`nova+note://${name}`);
          },
          { timeoutMs: 5_000, intervalMs: 100, what: `the update of note://${name}` },
        );
      }
      const after = await Promise.all(replicas.map((r) => r.requestsServed()));
      assert.ok(after[0]! > before[0]! && after[1]! > before[1]!, `both replicas took subscribes: ${JSON.stringify({ before, after })}`);
    } finally {
      await c.close();
    }
  });

  it('the console of either replica lists the sessions Redis holds, and ending one there ends it for every replica', async () => {
    const admin = async (replica: Replica, path: string, method = 'GET') => {
      const res = await fetch(`http://${replica.admin}${path}`, { method, headers: { 'x-admin-key': ADMIN_KEY } });
      return { status: res.status, json: (await res.json()) as { total: number; store: string; sessions: { ref: string; client: string | null; upstream: { server: string }[] }[] } };
    };
    const c = await connectClient(mcpUrl, { name: 'console-probe', version: '9' });
    try {
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      const [onA, onB] = await Promise.all(replicas.map((r) => admin(r, '/admin/api/sessions')));
      for (const seen of [onA!, onB!]) {
        assert.equal(seen.status, 200);
        assert.equal(seen.json.store, 'shared');
      }
      const mine = onA!.json.sessions.find((x) => x.client === 'console-probe 9');
      assert.ok(mine !== undefined, 'listed by replica A');
      assert.deepEqual(mine.upstream.map((u) => u.server), ['alpha'], 'with its upstream session');
      assert.ok(onB!.json.sessions.some((x) => x.ref === mine.ref), 'and by replica B');
      assert.equal((await admin(replicas[1]!, `/admin/api/sessions/${mine.ref}/end`, 'POST')).status, 200);
      // Whichever replica takes the next requests, the session is gone.
      for (let i = 0; i < 4; i++) {
        const res = await rawRequest(mcpUrl, {
          headers: { 'mcp-session-id': c.sessionId!, 'mcp-protocol-version': '2025-11-25' },
          body: { jsonrpc: '2.0', id: i + 1, method: 'tools/list' },
        });
        assert.equal(res.status, 404);
      }
      assert.ok(!(await admin(replicas[0]!, '/admin/api/sessions')).json.sessions.some((x) => x.ref === mine.ref));
    } finally {
      await c.close().catch(() => {});
    }
  });

  it('serves the server→client stream from either replica, and a DELETE on any replica ends it', async () => {
    const c = await connectClient(mcpUrl);
    await c.client.subscribeResource({ uri: 'alpha+demo://replicated' });
    const sessionId = c.sessionId!;
    await c.close();
    const headers = { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    /** Opens a GET stream and reads it until `until` holds for what arrived, or it ends. */
    const open = async (): Promise<{ text: () => string; ended: Promise<void>; abort: () => void }> => {
      const ac = new AbortController();
      const res = await fetch(mcpUrl, { headers, signal: ac.signal });
      assert.equal(res.status, 200);
      let text = '';
      const decoder = new TextDecoder();
      const ended = (async () => {
        try {
          for await (const chunk of res.body!) text += decoder.decode(chunk as Uint8Array, { stream: true });
        } catch {
          // aborted by the test
        }
      })();
      return { text: () => text, ended, abort: () => ac.abort() };
    };
    const served = new Set<string>();
    const before = await Promise.all(replicas.map((r) => r.requestsServed()));
    // Envoy spreads ext_proc streams over both replicas: each GET, wherever it lands, carries the session's events.
    for (let i = 0; i < 4; i++) {
      const s = await open();
      await waitUntil(
        async () => {
          await alpha.notifyResourceUpdated('demo://replicated');
          return s.text().includes('alpha+demo://replicated');
        },
        { timeoutMs: 15_000, intervalMs: 200, what: `an event on GET ${i}` },
      );
      s.abort();
      await s.ended;
    }
    const afterGets = await Promise.all(replicas.map((r) => r.requestsServed()));
    afterGets.forEach((n, i) => {
      if (n > before[i]!) served.add(String(i));
    });
    assert.equal(served.size, 2, 'both replicas served some of the streams');
    // DELETE goes wherever Envoy sends it; the stream ends on whichever replica holds it.
    const s = await open();
    await waitUntil(
      async () => {
        await alpha.notifyResourceUpdated('demo://replicated');
        return s.text().includes('alpha+demo://replicated');
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'an event before DELETE' },
    );
    const del = await fetch(mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' } });
    assert.equal(del.status, 200);
    const ended = await Promise.race([s.ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref())]);
    s.abort();
    assert.ok(ended, 'the stream ended after DELETE');
  });

  it('loses no request when a replica is stopped with SIGTERM under load, and none when it comes back', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    // Closed loop: each worker sends its next call when the previous one is answered.
    const traffic = new Traffic(
      mcpUrl,
      sid,
      (i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: `t${i}` } } }),
      { workers: 4, gapMs: 20, timeoutMs: 10_000 },
    );
    const moreAnswers = async (n: number, what: string): Promise<void> => {
      const target = traffic.outcomes.length + n;
      await waitUntil(() => traffic.outcomes.length >= target, { timeoutMs: 15_000, what });
    };
    const victim = replicas[0]!;
    try {
      await moreAnswers(40, 'load to start');
      victim.terminate();
      // Draining: it says so, Envoy's gRPC health check takes it out, and only then does it stop.
      await waitUntil(async () => {
        const r = await victim.readyz();
        return r.status === 503 && r.text.includes('draining');
      }, { timeoutMs: 5_000, what: 'the replica to report draining' });
      await waitForProcessorHosts(1);
      await victim.exited();
      assert.match(victim.output.text(), /draining/);
      await moreAnswers(40, 'load on the remaining replica');
      await victim.start();
      await waitForProcessorHosts(2);
      const served = await victim.requestsServed();
      await moreAnswers(40, 'load on both replicas again');
      await waitUntil(async () => (await victim.requestsServed()) > served, { timeoutMs: 10_000, what: 'the restarted replica to take requests' });
    } finally {
      await traffic.stop();
    }
    const failed = traffic.outcomes.filter((o) => o.status !== 200 || o.rpcCode !== null);
    assert.ok(traffic.outcomes.length >= 120, `${traffic.outcomes.length} requests`);
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${traffic.outcomes.length} requests failed`);
  });

  it('never hangs when Redis dies mid-traffic, and recovers when it is back', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    await redis.kill();
    for (let i = 0; i < 6; i++) {
      const started = Date.now();
      const r = await rawRequest(mcpUrl, {
        headers: { 'mcp-session-id': sid },
        body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' } } },
      });
      assert.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`);
      assert.equal(r.status, 503, r.text);
      assert.equal((r.json as { error: { code: number; message: string } }).error.code, -32000);
      assert.match((r.json as { error: { message: string } }).error.message, /shared state/);
      assert.equal(r.headers.get('retry-after'), '1');
    }
    // The passthrough endpoint needs no gateway session; its limits fail open as configured.
    const p = await rawInitialize(passthroughUrl);
    const call = await rawRequest(passthroughUrl, {
      headers: { 'mcp-session-id': p.sessionId! },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'open' } } },
    });
    assert.equal(call.status, 200);
    await waitUntil(() => replicas.some((r) => r.output.text().includes('Redis unavailable')), {
      timeoutMs: 5000,
      what: 'the outage log line',
    });

    await redis.restart();
    // Each replica reconnects on its own (backoff ≤ 1 s): wait until several in a row succeed,
    // which round-robin spreads over both.
    let streak = 0;
    await waitUntil(
      async () => {
        const again = await rawRequest(mcpUrl, {
          body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } },
        });
        streak = again.status === 200 ? streak + 1 : 0;
        return streak >= 6;
      },
      { timeoutMs: 15_000, what: 'initialize to work again on both replicas after Redis restarted' },
    );
    const c = await connectClient(mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'back' } })), 'alpha: back');
    } finally {
      await c.close();
    }
    await waitUntil(() => replicas.some((r) => r.output.text().includes('Redis reachable again')), {
      timeoutMs: 5000,
      what: 'the recovery log line',
    });
  });
});
