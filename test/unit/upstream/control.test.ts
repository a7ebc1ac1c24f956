import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inMemoryContext } from '../../support/in-memory-upstream.js';

describe('the gateway’s own session per upstream', () => {
  it('opens once for concurrent users, and renews once when the upstream forgets it', async () => {
    const { ctx, upstream, control, close } = await inMemoryContext({ alpha: { tools: [{ name: 'a' }] } });
    try {
      const alpha = ctx.rc.servers.get('alpha')!;
      await Promise.all([control.call(alpha, 'tools/list', undefined), control.call(alpha, 'prompts/list', undefined), control.ping(alpha, 1000)]);
      assert.equal(upstream.count('alpha', 'initialize'), 1);
      upstream.restart('alpha');
      assert.deepEqual(await control.call(alpha, 'tools/list', undefined), { tools: [{ name: 'a' }] });
      assert.equal(upstream.count('alpha', 'initialize'), 2);
      assert.equal(upstream.count('alpha', 'notifications/initialized'), 2, 'the handshake is complete each time');
    } finally {
      await close();
    }
  });

  it('renews a session the upstream forgets once; forgetting the new one too takes the server for down, with a pause', async () => {
    const { ctx, upstream, control, close } = await inMemoryContext({ amnesiac: { forgetful: true } });
    try {
      const server = ctx.rc.servers.get('amnesiac')!;
      await assert.rejects(control.call(server, 'tools/list', undefined), /keeps forgetting the gateway session/);
      assert.equal(upstream.count('amnesiac', 'initialize'), 2, 'one session and one renewal');
      const opened = 2;
      // The catalog leaves it out without trying again during the pause.
      assert.deepEqual((await ctx.catalog.list('tools')).items, []);
      assert.equal(upstream.count('amnesiac', 'initialize'), opened);
      // A health check always tries, and fails the same bounded way.
      await assert.rejects(control.ping(server, 1000), /keeps forgetting/);
      assert.ok(upstream.count('amnesiac', 'initialize') - opened <= 2);
    } finally {
      await close();
    }
  });

  it('is ended with DELETE when the replica shuts down', async () => {
    const { ctx, upstream, control, close } = await inMemoryContext({ alpha: {}, beta: {} });
    await control.ping(ctx.rc.servers.get('alpha')!, 1000);
    await control.ping(ctx.rc.servers.get('beta')!, 1000);
    assert.equal(upstream.sessions('alpha') + upstream.sessions('beta'), 2);
    await close();
    assert.equal(upstream.sessions('alpha') + upstream.sessions('beta'), 0);
  });
});
