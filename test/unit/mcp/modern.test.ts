import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors/gateway-error.js';
import { decodeHeaderValue, routingHeaderMismatch } from '../../../src/mcp/headers.js';
import { claimsModern, mayBeModern, META, readEnvelope } from '../../../src/mcp/modern.js';

const MODERN = '2026-07-28';

function headers(h: Record<string, string>): { get(name: string): string | undefined } {
  return { get: (name) => h[name] };
}

const ENVELOPE = { [META.protocolVersion]: MODERN, [META.clientCapabilities]: {} };

/** The error code (or 'ok') and JSON-RPC code readEnvelope answers. */
function check(h: Record<string, string>, method: string, params: Record<string, unknown> | undefined): string {
  try {
    readEnvelope(headers(h), method, params);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return `${err.code} ${err.jsonrpcCode}`;
  }
}

describe('2026-07-28 requests', () => {
  it('tells the eras apart by the version header, and by _meta for a version nobody knows', () => {
    assert.equal(mayBeModern(headers({})), false);
    assert.equal(mayBeModern(headers({ 'mcp-protocol-version': '2025-06-18' })), false);
    assert.equal(mayBeModern(headers({ 'mcp-protocol-version': MODERN })), true);
    assert.equal(mayBeModern(headers({ 'mcp-protocol-version': 'v999.0.0' })), true);
    assert.equal(claimsModern({ _meta: { [META.protocolVersion]: 'v999.0.0' } }), true);
    assert.equal(claimsModern({ _meta: {} }), false);
    assert.equal(claimsModern(undefined), false);
  });

  it('checks the envelope and the routing headers in the revision’s order', () => {
    const base = { 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'a__t' };
    const call = (meta: Record<string, unknown> | undefined, name = 'a__t'): Record<string, unknown> => ({ name, ...(meta === undefined ? {} : { _meta: meta }) });
    assert.equal(check(base, 'tools/call', call(ENVELOPE)), 'ok');
    assert.equal(check(base, 'tools/call', call(undefined)), 'GW_ERR_ENVELOPE_INVALID -32602');
    assert.equal(check(base, 'tools/call', call({ [META.protocolVersion]: MODERN })), 'GW_ERR_ENVELOPE_INVALID -32602');
    // A version mismatch wins over an unknown version; both unknown and equal is -32022.
    assert.equal(check(base, 'tools/call', call({ ...ENVELOPE, [META.protocolVersion]: 'v9' })), 'GW_ERR_HEADER_MISMATCH -32020');
    assert.equal(check({ ...base, 'mcp-protocol-version': 'v9' }, 'tools/call', call({ ...ENVELOPE, [META.protocolVersion]: 'v9' })), 'GW_ERR_VERSION_UNSUPPORTED -32022');
    assert.equal(check({ ...base, 'mcp-method': 'tools/list' }, 'tools/call', call(ENVELOPE)), 'GW_ERR_HEADER_MISMATCH -32020');
    assert.equal(check({ 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call' }, 'tools/call', call(ENVELOPE)), 'GW_ERR_HEADER_MISMATCH -32020');
    assert.equal(check(base, 'tools/call', call(ENVELOPE, 'b__t')), 'GW_ERR_HEADER_MISMATCH -32020');
    // Mcp-Name only for the methods that name something.
    assert.equal(check({ 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/list' }, 'tools/list', { _meta: ENVELOPE }), 'ok');
  });

  it('decodes base64-encoded header values before comparing them', () => {
    const name = 'a__héllo wörld';
    const encoded = `=?base64?${Buffer.from(name).toString('base64')}?=`;
    assert.equal(decodeHeaderValue(encoded), name);
    assert.equal(decodeHeaderValue('plain'), 'plain');
    assert.equal(decodeHeaderValue('=?base64?not base64?='), '=?base64?not base64?=');
    const h = { 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': encoded };
    assert.equal(check(h, 'tools/call', { name, _meta: ENVELOPE }), 'ok');
    assert.equal(routingHeaderMismatch(headers(h), 'tools/call', { name }), null);
    assert.match(routingHeaderMismatch(headers(h), 'tools/call', { name: 'other' }) ?? '', /Mcp-Name/);
    assert.match(routingHeaderMismatch(headers({ 'mcp-method': 'x' }), 'tools/call', {}) ?? '', /Mcp-Method/);
    assert.equal(routingHeaderMismatch(headers({}), 'tools/call', { name }), null, 'absent headers are not checked on passthrough');
  });
});
