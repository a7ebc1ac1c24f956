import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import type { ProcessingResponseMsg } from '../../../src/extproc/proto.js';
import { mcpPost, mutationOf, requestBody, requestHeaders, responseBody, responseHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext } from '../../support/in-memory-upstream.js';

const BIG = '9007199254740993'; // 2^53 + 1: a JavaScript number would make it ...992

function immediateText(reply: ProcessingResponseMsg): { status: number; text: string } {
  const imm = reply['immediate_response'] as { status: { code: number }; body: Buffer } | undefined;
  assert.ok(imm !== undefined, `expected a local answer: ${JSON.stringify(Object.keys(reply))}`);
  return { status: imm.status.code, text: imm.body.toString() };
}

function deep(levels: number): string {
  return '['.repeat(levels) + ']'.repeat(levels);
}

describe('client input never becomes an internal error', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  let session: string;
  before(async () => {
    ({ ctx, close } = await inMemoryContext({ alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } }));
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp')));
    const init = await call.send(requestBody(`{"jsonrpc":"2.0","id":${BIG},"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`));
    const imm = init['immediate_response'] as { headers: { set_headers: { header: { key: string; raw_value: Buffer } }[] }; body: Buffer };
    session = imm.headers.set_headers.find((h) => h.header.key === 'mcp-session-id')!.header.raw_value.toString();
    assert.match(imm.body.toString(), new RegExp(`^\\{"jsonrpc":"2.0","id":${BIG},"result":`), 'initialize answers with the id exactly as sent');
  });
  after(() => close());

  async function post(body: string, path = '/mcp'): Promise<ProcessingResponseMsg> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost(path, path === '/mcp' ? { 'mcp-session-id': session } : {})));
    return call.send(requestBody(body));
  }

  it('answers JSON nested thousands deep with -32600, on both endpoints and in initialize', async () => {
    for (const [path, body] of [
      ['/mcp', `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"x":${deep(5000)}}}}`],
      ['/servers/alpha/mcp', `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":${deep(5000)}}}}`],
      ['/mcp', `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"x":${deep(5000)}},"clientInfo":{"name":"t","version":"1"}}}`],
    ] as const) {
      const r = immediateText(await post(body, path));
      assert.equal(r.status, 400, path);
      assert.deepEqual(JSON.parse(r.text), { jsonrpc: '2.0', id: 1, error: { code: -32600, message: 'Invalid Request: nested too deeply' } });
    }
  });

  it('treats methods named after Object.prototype members as unknown methods', async () => {
    for (const method of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'notifications/__proto__']) {
      const asRequest = immediateText(await post(JSON.stringify({ jsonrpc: '2.0', id: 'm', method })));
      assert.deepEqual(JSON.parse(asRequest.text), { jsonrpc: '2.0', id: 'm', error: { code: -32601, message: `Method not found: ${method}` } }, method);
      const asNotification = immediateText(await post(JSON.stringify({ jsonrpc: '2.0', method })));
      assert.equal(asNotification.status, 202, method);
    }
  });

  it('keeps lone surrogates out of Envoy metadata', async () => {
    const reply = await post('{"jsonrpc":"2.0","id":2,"method":"\\ud800x","params":{"name":"\\udfff"}}');
    const md = reply['dynamic_metadata'] as { fields: Record<string, { structValue: { fields: Record<string, { stringValue: string }> } }> };
    const method = md.fields['mcp.gateway']!.structValue.fields['method']!.stringValue;
    assert.ok(method.isWellFormed());
    assert.equal(JSON.parse(immediateText(reply).text).error.code, -32601);
  });

  it('carries an id beyond 2^53 byte for byte: gateway errors, forwarded requests, rewritten responses, passthrough', async () => {
    const unknown = immediateText(await post(`{"jsonrpc":"2.0","id":${BIG},"method":"nope"}`));
    assert.equal(unknown.text, `{"jsonrpc":"2.0","id":${BIG},"error":{"code":-32601,"message":"Method not found: nope"}}`);
    const badParams = immediateText(await post(`{"jsonrpc":"2.0","id":-${BIG},"method":"tools/call","params":{}}`));
    assert.match(badParams.text, new RegExp(`"id":-${BIG},`));

    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session })));
    const fwd = mutationOf(await call.send(requestBody(`{"jsonrpc":"2.0","id":${BIG},"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`)));
    assert.match(fwd.body!, new RegExp(`"id":${BIG},`), 'the upstream gets the id as sent');
    await call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }));
    const event = `data: {"jsonrpc":"2.0","id":${BIG},"result":{"content":[{"type":"resource_link","uri":"file:///a","name":"a"}]}}\n\n`;
    const out = mutationOf(await call.send(responseBody(event, true)));
    assert.match(out.body!, new RegExp(`"id":${BIG},`), 'a rewritten response keeps it');
    assert.match(out.body!, /alpha\+file:\/\/\/a/);

    const pass = mutationOf(await post(`{"jsonrpc":"2.0","id":${BIG},"method":"tools/call","params":{"name":"echo"}}`, '/servers/alpha/mcp'));
    assert.match(pass.body!, new RegExp(`"id":${BIG},`));
  });

  it('finds the request a cancellation with a big requestId names', async () => {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session })));
    await call.send(requestBody(`{"jsonrpc":"2.0","id":${BIG}1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`));
    const cancel = mutationOf(await post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":${BIG}1}}`));
    assert.equal(cancel.set.get('x-mcpgw-backend'), 'alpha', 'the cancellation goes to the server running the call');
    assert.match(cancel.body!, new RegExp(`"requestId":${BIG}1\\}`));
  });
});
