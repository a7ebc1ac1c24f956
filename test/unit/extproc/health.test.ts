import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { HealthState, loadHealthService } from '../../../src/extproc/health.js';
import { startExtProcServer } from '../../../src/extproc/server.js';
import { PROCESSOR_DRAIN_MS, PROCESSOR_HEALTH_CHECK, processorDrainMs } from '../../../src/envoy/contract.js';

type Status = { status: string };
interface HealthClient extends grpc.Client {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: Status) => void): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<Status>;
}

describe('grpc.health.v1.Health on the ext_proc server (loopback)', () => {
  const state = new HealthState();
  let server: grpc.Server;
  let client: HealthClient;

  before(async () => {
    const started = await startExtProcServer(
      '127.0.0.1:0',
      () => {
        throw new Error('no ext_proc stream in this test');
      },
      pino({ level: 'silent' }),
      state,
    );
    server = started.server;
    const Ctor = grpc.makeGenericClientConstructor(loadHealthService(), 'Health');
    client = new Ctor(started.address, grpc.credentials.createInsecure()) as unknown as HealthClient;
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  const check = (service: string): Promise<Status> =>
    new Promise((resolve, reject) => client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res!))));

  it('reports NOT_SERVING until ready, SERVING when ready, NOT_SERVING while draining', async () => {
    assert.equal((await check('')).status, 'NOT_SERVING');
    state.set('SERVING');
    assert.equal((await check('')).status, 'SERVING');
    assert.equal((await check('envoy.service.ext_proc.v3.ExternalProcessor')).status, 'SERVING');
    state.set('NOT_SERVING');
    assert.equal((await check('')).status, 'NOT_SERVING');
  });

  it('answers NOT_FOUND for a service it does not serve', async () => {
    await assert.rejects(check('some.other.Service'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
  });

  it('streams the current status and every change to a Watch, and ends it on shutdown', async () => {
    state.set('SERVING');
    const stream = client.Watch({ service: '' });
    const seen: string[] = [];
    const ended = new Promise<void>((resolve) => stream.on('end', resolve).on('error', () => resolve()));
    const next = (n: number): Promise<void> =>
      new Promise((resolve) => {
        const onData = (m: Status): void => {
          seen.push(m.status);
          if (seen.length >= n) {
            stream.off('data', onData);
            resolve();
          }
        };
        stream.on('data', onData);
      });
    await next(1);
    state.set('NOT_SERVING');
    await next(2);
    assert.deepEqual(seen, ['SERVING', 'NOT_SERVING']);
    state.endWatches();
    await ended;
  });

  it('drains long enough for Envoy to see NOT_SERVING: one check interval plus a check timeout, and one interval more', () => {
    const hc = PROCESSOR_HEALTH_CHECK;
    assert.equal(PROCESSOR_DRAIN_MS, processorDrainMs(hc));
    assert.ok(PROCESSOR_DRAIN_MS >= hc.unhealthyThreshold * (hc.intervalMs + hc.timeoutMs) + hc.intervalMs);
    assert.equal(processorDrainMs({ ...hc, unhealthyThreshold: 2 } as unknown as typeof hc), 2 * (hc.intervalMs + hc.timeoutMs) + hc.intervalMs);
  });
});
