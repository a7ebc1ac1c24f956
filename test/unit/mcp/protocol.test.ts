import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forgotSession } from '../../../src/mcp/protocol.js';

describe('forgotSession: an upstream answer that means the session is gone', () => {
  it('takes 404, and a 400 whose JSON-RPC error speaks of the session', () => {
    assert.equal(forgotSession(404, ''), true);
    assert.equal(forgotSession(400, '{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}'), true);
    assert.equal(forgotSession(400, '{"jsonrpc":"2.0","error":{"code":-32000,"message":"Session not found"},"id":1}'), true);
  });

  it('leaves other 400s, other statuses and bodies that are not JSON-RPC errors alone', () => {
    assert.equal(forgotSession(400, '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"},"id":1}'), false);
    assert.equal(forgotSession(400, 'session expired'), false);
    assert.equal(forgotSession(400, '{"error":"session"}'), false);
    assert.equal(forgotSession(400, `{"error":{"message":"session${' '.repeat(5000)}"}}`), false);
    assert.equal(forgotSession(200, '{"error":{"message":"session"}}'), false);
    assert.equal(forgotSession(500, '{"error":{"message":"session"}}'), false);
  });
});
