import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors/gateway-error.js';
import { parseMessage } from '../../../src/mcp/message.js';

function code(body: string): string {
  try {
    parseMessage(body);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return err.code;
  }
}

describe('parseMessage', () => {
  it('classifies requests, notifications and responses', () => {
    assert.equal(parseMessage('{"jsonrpc":"2.0","id":1,"method":"ping"}').kind, 'request');
    assert.equal(parseMessage('{"jsonrpc":"2.0","id":"a","method":"x","params":{}}').kind, 'request');
    assert.equal(parseMessage('{"jsonrpc":"2.0","method":"notifications/initialized"}').kind, 'notification');
    assert.equal(parseMessage('{"jsonrpc":"2.0","id":1,"result":{}}').kind, 'response');
    assert.equal(parseMessage('{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}').kind, 'response');
  });

  it('rejects malformed JSON with a parse error', () => {
    for (const b of ['', '{', 'nul', '{"a":1}x', '\u0000']) assert.equal(code(b), 'GW_ERR_PARSE', JSON.stringify(b));
  });

  it('rejects what is not one JSON-RPC 2.0 message', () => {
    for (const b of [
      '[]',
      '[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
      '{"id":1,"method":"ping"}',
      '{"jsonrpc":"1.0","id":1,"method":"ping"}',
      '{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
      '{"jsonrpc":"2.0","id":null,"method":"ping"}',
      '{"jsonrpc":"2.0","id":{},"method":"ping"}',
      '{"jsonrpc":"2.0","id":1,"method":""}',
      '{"jsonrpc":"2.0","id":1,"method":5}',
      '{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}',
      '{"jsonrpc":"2.0","id":1}',
      '{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}',
      '"string"',
      '42',
      'null',
    ]) {
      assert.equal(code(b), 'GW_ERR_INVALID_REQUEST', b);
    }
  });
});
