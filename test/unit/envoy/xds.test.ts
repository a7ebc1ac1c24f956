import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../../src/config/load.js';
import { buildSnapshot, TYPE_URL, XdsServer } from '../../../src/envoy/xds.js';
import { encodeMessage, xdsRoot } from '../../../src/envoy/xds-proto.js';
import { Metrics } from '../../../src/observability/metrics.js';

const config = (servers: Record<string, string>) => parseConfig({ servers: Object.fromEntries(Object.entries(servers).map(([n, url]) => [n, { url }])) });

/** One ADS stream as the server's handler sees it: what Envoy sends in, what the server writes out. */
class Stream extends EventEmitter {
  readonly written: { version_info: string; type_url: string; nonce: string; resources: unknown[] }[] = [];
  write(m: never): boolean {
    this.written.push(m);
    return true;
  }
  end(): void {}
  destroy(): void {}
  ask(type: string, version = '', nonce = '', error?: string): void {
    this.emit('data', { type_url: type, version_info: version, response_nonce: nonce, node: { id: 'envoy-1' }, ...(error === undefined ? {} : { error_detail: { code: 3, message: error } }) });
  }
}

function serve(c = config({ alpha: 'http://127.0.0.1:9001/mcp' })): { xds: XdsServer; stream: Stream; metrics: Metrics } {
  const metrics = new Metrics({ processMetrics: false });
  const xds = new XdsServer(c, pino({ level: 'silent' }), metrics);
  const stream = new Stream();
  (xds.service().handlers['StreamAggregatedResources'] as (call: unknown) => void)(stream);
  return { xds, stream, metrics };
}

describe('xDS resources', () => {
  it('are the same bytes and versions for the same config, whichever replica builds them', () => {
    const a = buildSnapshot(config({ alpha: 'http://127.0.0.1:9001/mcp', beta: 'http://127.0.0.1:9002/mcp' }));
    const b = buildSnapshot(config({ alpha: 'http://127.0.0.1:9001/mcp', beta: 'http://127.0.0.1:9002/mcp' }));
    for (const type of Object.values(TYPE_URL)) assert.equal(a.get(type)!.version, b.get(type)!.version);
    const c = buildSnapshot(config({ alpha: 'http://127.0.0.1:9001/mcp', beta: 'http://127.0.0.1:9003/mcp' }));
    assert.notEqual(c.get(TYPE_URL.cluster)!.version, a.get(TYPE_URL.cluster)!.version, 'an endpoint changed');
    assert.equal(c.get(TYPE_URL.listener)!.version, a.get(TYPE_URL.listener)!.version, 'listeners did not');
  });

  it('decode back to what was meant: durations, wrapped values, nested Any', () => {
    const Cluster = xdsRoot().lookupType('envoy.config.cluster.v3.Cluster');
    const snap = buildSnapshot(config({ alpha: 'http://127.0.0.1:9001/mcp' }));
    const cluster = Cluster.toObject(Cluster.decode(snap.get(TYPE_URL.cluster)!.resources[0]!.any.value), { longs: Number }) as Record<string, any>;
    assert.equal(cluster['name'], 'mcp_alpha');
    assert.ok(cluster['connect_timeout'].seconds > 0 || cluster['connect_timeout'].nanos > 0);
    assert.throws(() => encodeMessage('envoy.config.cluster.v3.Cluster', { name: 'x', no_such_field: 1 }), /Cluster\.no_such_field: .* has no such field/);
    assert.throws(() => encodeMessage('envoy.config.cluster.v3.Cluster', { name: 'x', connect_timeout: 'soon' }), /connect_timeout: expected a duration/);
  });
});

describe('ADS', () => {
  it('answers a subscription, stays quiet on its ACK, and never re-sends what Envoy refused', () => {
    const { stream, metrics } = serve();
    stream.ask(TYPE_URL.cluster);
    assert.equal(stream.written.length, 1);
    const first = stream.written[0]!;
    assert.equal(first.type_url, TYPE_URL.cluster);
    assert.equal(first.resources.length, 1);
    stream.ask(TYPE_URL.cluster, first.version_info, first.nonce);
    assert.equal(stream.written.length, 1, 'an ACK gets nothing');
    stream.ask(TYPE_URL.cluster, '', first.nonce, 'cluster rejected');
    assert.equal(stream.written.length, 1, 'a NACK is not answered with the same thing again');
    return metrics.render().then(({ body }) => assert.match(body, /mcp_gateway_xds_rejected_total\{type="cluster"\} 1/));
  });

  it('pushes a changed config in order, clusters first, and waits for Envoy to accept it', async () => {
    const { xds, stream } = serve();
    for (const type of [TYPE_URL.cluster, TYPE_URL.listener, TYPE_URL.route]) stream.ask(type);
    const acked = (): void => {
      for (const w of stream.written) stream.ask(w.type_url, w.version_info, w.nonce);
    };
    acked();
    const sent = stream.written.length;
    let done = false;
    const pushed = xds.setConfig(config({ alpha: 'http://127.0.0.1:9001/mcp', beta: 'http://127.0.0.1:9002/mcp' })).then(() => (done = true));
    const news = stream.written.slice(sent);
    assert.deepEqual(news.map((w) => w.type_url), [TYPE_URL.cluster, TYPE_URL.route], 'the listeners did not change: not re-sent');
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'not done before Envoy answers');
    for (const w of news) stream.ask(w.type_url, w.version_info, w.nonce);
    await pushed;
    assert.equal(done, true);
    assert.equal(xds.connected, 1);
    stream.emit('close');
    assert.equal(xds.connected, 0);
  });
});
