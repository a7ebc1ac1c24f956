import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rawInitialize, rawRequest } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';
import { prng } from '../support/prng.js';
import { rawHttp, type RawHttpResponse } from '../support/raw-http.js';


const METHODS = [
  'initialize', 'ping', 'tools/list', 'tools/call', 'prompts/get', 'resources/read', 'resources/subscribe',
  'completion/complete', 'logging/setLevel', 'notifications/cancelled', 'notifications/initialized', 'nope', '',
];
const WEIRD: unknown[] = [
  null, true, 0, -1, 1.5, 1e308, '', 'alpha__echo', 'alpha+demo://shared/readme', 'gamma__x', 'alpha__',
  '__echo', 'ALPHA__echo', 'alpha\u200b__echo', 'alpha%5F%5Fecho', 'alpha+', '+x', 'mcpgw:alpha:n1', 'mcpgw:alpha:sx',
  [], {}, [1, 2], { name: 'alpha__echo' }, 'x'.repeat(5000), '\u0000', '\ud800',
];

describe('robustness: hostile and random input', () => {
  const stack = useStack({ demoServers: ['alpha'] });

  it('answers 400 seeded random messages with well-formed JSON-RPC, and keeps serving', async () => {
    const init = await rawInitialize(stack().mcpUrl);
    const sid = init.sessionId!;
    const seed = Number(process.env['ROBUSTNESS_SEED'] ?? 20261124);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

    for (let i = 0; i < 400; i++) {
      const msg: Record<string, unknown> = {};
      if (rnd() < 0.9) msg['jsonrpc'] = rnd() < 0.9 ? '2.0' : pick(WEIRD);
      if (rnd() < 0.8) msg['id'] = rnd() < 0.7 ? i : pick(WEIRD);
      if (rnd() < 0.9) msg['method'] = rnd() < 0.8 ? pick(METHODS) : pick(WEIRD);
      if (rnd() < 0.7) {
        const params: Record<string, unknown> = {};
        for (const k of ['name', 'uri', 'arguments', 'cursor', 'ref', 'level', 'requestId', 'protocolVersion', 'capabilities']) {
          if (rnd() < 0.3) params[k] = pick(WEIRD);
        }
        msg['params'] = rnd() < 0.9 ? params : pick(WEIRD);
      }
      if (rnd() < 0.05) msg['result'] = {};
      let body = JSON.stringify(msg);
      if (rnd() < 0.1) body = body.slice(0, Math.floor(rnd() * body.length)); // truncated JSON
      const headers: Record<string, string | null> = { 'mcp-session-id': rnd() < 0.9 ? sid : pick(['', 'x', sid + 'x']) };
      if (rnd() < 0.05) headers['mcp-protocol-version'] = pick(['2025-06-18', 'garbage', '']);
      if (rnd() < 0.03) headers['content-type'] = 'text/plain';
      const res = await rawRequest(stack().mcpUrl, { headers, body, timeoutMs: 15_000 });
      const where = `seed ${seed}, message ${i}: ${body.slice(0, 200)} → ${res.status} ${res.text.slice(0, 200)}`;
      assert.ok([200, 202, 400, 404, 406, 415, 503].includes(res.status), where);
      if (res.status === 202) {
        assert.equal(res.text, '', where);
        continue;
      }
      const reply = res.json as { jsonrpc?: string; result?: unknown; error?: { code?: unknown; message?: unknown } };
      assert.equal(reply?.jsonrpc, '2.0', where);
      assert.ok(reply.result !== undefined || (typeof reply.error?.code === 'number' && typeof reply.error.message === 'string'), where);
      if (res.status !== 200) assert.ok(reply.error !== undefined, where);
    }

    const health = await fetch(`${stack().adminUrl}/healthz`);
    assert.equal(health.status, 200);
    const ok = await rawRequest(stack().mcpUrl, {
      headers: { 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 'final', method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'still here' } } },
    });
    assert.equal((ok.json as { result: { content: { text: string }[] } }).result.content[0]?.text, 'alpha: still here');
  });
});

/** A JSON-RPC error as the gateway writes it: the body, the content type, the status. */
function assertJsonRpcError(res: RawHttpResponse, status: number, message: RegExp, where: string): void {
  const what = `${where}: ${res.raw.slice(0, 400)}`;
  assert.equal(res.status, status, what);
  assert.equal(res.headers.get('content-type'), 'application/json', what);
  const reply = JSON.parse(res.body) as { jsonrpc?: string; id?: unknown; error?: { code?: unknown; message?: unknown } };
  assert.equal(reply.jsonrpc, '2.0', what);
  assert.ok('id' in reply, what);
  assert.equal(typeof reply.error?.code, 'number', what);
  assert.match(String(reply.error?.message), message, what);
}

describe('robustness: what Envoy refuses itself is a JSON-RPC error too', () => {
  const stack = useStack({ demoServers: ['alpha', 'beta'] });
  const hostPort = (): string => stack().baseUrl.replace('http://', '');
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
  const post = (requestLine: string, extra = '', b = body): string =>
    `${requestLine}\r\nHost: ${hostPort()}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
    `Content-Length: ${Buffer.byteLength(b)}\r\n${extra}\r\n${b}`;
  const headers = (n: number): string => Array.from({ length: n }, (_, i) => `X-Filler-${i}: v\r\n`).join('');

  it('answers malformed HTTP, old versions, tunnels and oversized headers with the right status', async () => {
    const cases: [string, () => string, number, RegExp][] = [
      ['HTTP/1.0', () => post('POST /mcp HTTP/1.0'), 426, /Upgrade Required/],
      ['unknown method', () => post('BREW /mcp HTTP/1.1'), 400, /Bad Request/],
      ['CONNECT', () => `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n`, 405, /Method Not Allowed/],
      ['websocket upgrade', () => post('GET /mcp HTTP/1.1', 'Connection: Upgrade\r\nUpgrade: websocket\r\n', ''), 400, /upgrade/],
      ['NUL in the path', () => post('POST /mcp%00 HTTP/1.1'), 400, /Bad Request/],
      ['path without a slash', () => post('POST mcp HTTP/1.1'), 400, /Bad Request/],
      ['asterisk form', () => post('POST * HTTP/1.1'), 400, /Bad Request/],
      ['space in a header name', () => post('POST /mcp HTTP/1.1', 'Bad Name: x\r\n'), 400, /Bad Request/],
      ['non-numeric Content-Length', () => `POST /mcp HTTP/1.1\r\nHost: ${hostPort()}\r\nContent-Length: abc\r\n\r\n`, 400, /Bad Request/],
      ['two Content-Lengths', () => `POST /mcp HTTP/1.1\r\nHost: ${hostPort()}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`, 400, /Bad Request/],
      ['TLS bytes on a plain listener', () => '\x16\x03\x01\x00\x05hello\r\n\r\n', 400, /Bad Request/],
      ['a 70 KB header', () => post('POST /mcp HTTP/1.1', `X-Big: ${'a'.repeat(70_000)}\r\n`), 431, /Header Fields Too Large/],
      ['200 headers', () => post('POST /mcp HTTP/1.1', headers(200)), 431, /Header Fields Too Large/],
    ];
    for (const [name, bytes, status, message] of cases) {
      const res = await rawHttp(hostPort(), bytes()).catch((e: Error) => assert.fail(`${name}: ${e.message}`));
      assertJsonRpcError(res, status, message, name);
    }
  });

  it('answers a call with every header count up to the limit, on both endpoints, or refuses it with 431', async () => {
    const sid = (await rawInitialize(stack().mcpUrl)).sessionId!;
    const psid = (await rawInitialize(stack().serverUrl('alpha'))).sessionId!;
    const call = (name: string): string => JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: { text: 'h' } } });
    let served = 0;
    let refused = 0;
    // Around Envoy's 100-header limit, where the headers the gateway adds could tip a request over.
    for (let n = 80; n <= 100; n++) {
      for (const [path, session, name] of [['/mcp', sid, 'alpha__echo'], ['/servers/alpha/mcp', psid, 'echo']] as const) {
        const res = await rawHttp(hostPort(), post(`POST ${path} HTTP/1.1`, `Mcp-Session-Id: ${session}\r\n${headers(n)}`, call(name)));
        if (res.status === 431) {
          assertJsonRpcError(res, 431, /Header Fields Too Large/, `${n} headers on ${path}`);
          refused++;
        } else {
          assert.equal(res.status, 200, `${n} headers on ${path}: ${res.raw.slice(0, 300)}`);
          assert.match(res.body, /alpha: h/, `${n} headers on ${path}`);
          served++;
        }
      }
    }
    assert.ok(served > 0 && refused > 0, `both sides of the limit were tried: ${served} served, ${refused} refused`);
  });

  it('names the server when an open passthrough upstream is gone', async () => {
    await stack().demo['beta']!.close();
    const res = await rawHttp(hostPort(), post('POST /servers/beta/mcp HTTP/1.1'));
    assertJsonRpcError(res, 503, /^Upstream server unavailable: beta$/, 'beta stopped');
    assert.equal(res.headers.get('retry-after'), '1');
  });

  it('fails closed with 503 and Retry-After while the processor is gone', async () => {
    await stack().processor.stop();
    try {
      for (const [name, bytes] of [
        ['POST /mcp', post('POST /mcp HTTP/1.1')],
        ['POST passthrough', post('POST /servers/alpha/mcp HTTP/1.1')],
        ['GET passthrough', `GET /servers/alpha/mcp HTTP/1.1\r\nHost: ${hostPort()}\r\nAccept: text/event-stream\r\n\r\n`],
        ['DELETE /mcp', `DELETE /mcp HTTP/1.1\r\nHost: ${hostPort()}\r\nMcp-Session-Id: x\r\n\r\n`],
      ] as const) {
        const res = await rawHttp(hostPort(), bytes);
        assertJsonRpcError(res, 503, /processor cannot be reached/, name);
        assert.equal(res.headers.get('retry-after'), '1', name);
      }
    } finally {
      await stack().processor.start();
    }
  });
});
