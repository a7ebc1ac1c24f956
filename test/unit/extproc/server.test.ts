import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createContext } from '../../../src/context.js';
import { parseConfig } from '../../../src/config/load.js';
import { headerMap } from '../../../src/extproc/server.js';
import { startCall, type FakeCall } from '../../support/fake-call.js';
import type { ProcessingRequestMsg } from '../../../src/extproc/proto.js';
import type { GatewayContext } from '../../../src/exchange.js';

function headers(h: Record<string, string>, endOfStream = false): ProcessingRequestMsg {
  return {
    request: 'request_headers',
    request_headers: { headers: { headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) }, end_of_stream: endOfStream },
  };
}

function body(text: string): ProcessingRequestMsg {
  return { request: 'request_body', request_body: { body: Buffer.from(text), end_of_stream: true } };
}

const POST = { ':method': 'POST', ':path': '/mcp', ':authority': '127.0.0.1:8080', accept: 'application/json, text/event-stream', 'content-type': 'application/json' };

describe('ext_proc stream handling (no sockets)', () => {
  let ctx: GatewayContext;
  let close: () => void;
  before(async () => {
    const created = await createContext(parseConfig({ servers: { alpha: { url: 'http://127.0.0.1:1/mcp' } } }, {}), pino({ level: 'silent' }));
    ctx = created.context;
    close = created.close;
  });
  after(() => close());

  function start(): FakeCall {
    return startCall(ctx);
  }

  it('answers each message once, in order, and renders a bad body as a JSON-RPC ImmediateResponse', async () => {
    const call = start();
    call.emit('data', headers(POST));
    call.emit('data', body('{"jsonrpc":'));
    const [first, second] = await call.replies(2);
    assert.ok(first !== undefined && 'request_headers' in first, JSON.stringify(first));
    const imm = second?.['immediate_response'] as { status: { code: number }; headers: { set_headers: { header: { key: string; raw_value: Buffer } }[] }; body: Buffer };
    assert.equal(imm.status.code, 400);
    const ct = imm.headers.set_headers.find((h) => h.header.key === 'content-type');
    assert.equal(ct?.header.raw_value.toString(), 'application/json');
    assert.deepEqual(JSON.parse(imm.body.toString()), { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error: body is not valid JSON' } });
  });

  it('removes client-sent routing and credential headers at request headers', async () => {
    const call = start();
    call.emit('data', headers({ ...POST, 'x-mcpgw-backend': 'alpha', authorization: 'Bearer x' }));
    const [first] = await call.replies(1);
    const removed = (first?.['request_headers'] as { response: { header_mutation: { remove_headers: string[] } } }).response.header_mutation.remove_headers;
    for (const h of ['x-mcpgw-backend', 'authorization', 'x-api-key']) assert.ok(removed.includes(h), h);
  });

  it('answers PUT on /mcp with 405 and an Allow header, at request headers', async () => {
    const call = start();
    call.emit('data', headers({ ':method': 'PUT', ':path': '/mcp', ':authority': '127.0.0.1:8080', accept: 'text/event-stream' }, true));
    const [first] = await call.replies(1);
    const imm = first?.['immediate_response'] as { status: { code: number }; headers: { set_headers: { header: { key: string; raw_value: Buffer } }[] } };
    assert.equal(imm.status.code, 405);
    assert.equal(imm.headers.set_headers.find((h) => h.header.key === 'allow')?.header.raw_value.toString(), 'GET, POST, DELETE');
  });

  it('answers GET on /mcp without a session at request headers, before any stream starts', async () => {
    const call = start();
    call.emit('data', headers({ ':method': 'GET', ':path': '/mcp', ':authority': '127.0.0.1:8080', accept: 'text/event-stream' }, true));
    const [first] = await call.replies(1);
    const imm = first?.['immediate_response'] as { status: { code: number } };
    assert.equal(imm.status.code, 400);
  });

  it('answers GET on /mcp with 405 where Envoy sends request bodies (it would refuse a streamed response)', async () => {
    const call = start();
    const get = headers({ ':method': 'GET', ':path': '/mcp', ':authority': '127.0.0.1:8080', accept: 'text/event-stream', 'mcp-session-id': 'x' }, true);
    call.emit('data', { ...get, protocol_config: { request_body_mode: 'BUFFERED' } });
    const [first] = await call.replies(1);
    const imm = first?.['immediate_response'] as { status: { code: number }; headers: { set_headers: { header: { key: string; raw_value: Buffer } }[] } };
    assert.equal(imm.status.code, 405);
    assert.equal(imm.headers.set_headers.find((h) => h.header.key === 'allow')?.header.raw_value.toString(), 'POST, DELETE');
  });

  it('ends the gRPC stream when Envoy does, after the pending replies', async () => {
    const call = start();
    call.emit('data', headers(POST));
    call.emit('end');
    await call.replies(1);
    await new Promise((r) => setImmediate(r));
    assert.equal(call.ended, true);
    assert.equal(call.destroyed, false);
  });

  it('joins repeated header values and prefers raw_value', () => {
    const m = headerMap({ headers: { headers: [{ key: 'a', raw_value: Buffer.from('1') }, { key: 'a', value: '2' }, { key: 'b', value: 'x', raw_value: Buffer.alloc(0) }] } });
    assert.equal(m.get('a'), '1, 2');
    assert.equal(m.get('b'), 'x');
  });
});
