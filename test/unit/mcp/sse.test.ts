import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonBodyRewriter, SseEventReader, sseEventText, SseRewriter, sseDataPayloads } from '../../../src/mcp/sse.js';

function feed(rw: SseRewriter, text: string, cuts: number[]): string {
  const buf = Buffer.from(text);
  let out = '';
  let prev = 0;
  for (const c of [...cuts, buf.length]) {
    out += rw.push(buf.subarray(prev, c), c === buf.length);
    prev = c;
  }
  return out;
}

const upper = (d: string): string | null => (d.includes('rewrite') ? d.toUpperCase() : null);

describe('SseRewriter', () => {
  const stream = 'id: 1\nevent: message\ndata: {"keep":1}\n\n' + 'data: {"rewrite":"é"}\n\n' + ': comment\n\n' + 'data: tail';

  it('gives the same output however the stream is cut into chunks', () => {
    const whole = feed(new SseRewriter(upper, 1 << 20), stream, []);
    assert.equal(whole, 'id: 1\nevent: message\ndata: {"keep":1}\n\ndata: {"REWRITE":"É"}\n\n: comment\n\ndata: tail');
    const bytes = Buffer.byteLength(stream);
    for (let i = 1; i < bytes; i++) {
      assert.equal(feed(new SseRewriter(upper, 1 << 20), stream, [i]), whole, `cut at ${i}`);
    }
    assert.equal(feed(new SseRewriter(upper, 1 << 20), stream, [3, 9, 17, 30, 41, 42, 50]), whole);
  });

  it('handles CRLF and lone CR line endings, including a CRLF split across chunks', () => {
    const crlf = 'data: {"rewrite":1}\r\n\r\ndata: x\r\r';
    const expected = 'data: {"REWRITE":1}\n\ndata: x\r\r';
    for (let i = 1; i < crlf.length; i++) assert.equal(feed(new SseRewriter(upper, 1 << 20), crlf, [i]), expected, `cut at ${i}`);
  });

  it('joins multi-line data and keeps id/event lines when rewriting', () => {
    const out = feed(new SseRewriter(upper, 1 << 20), 'event: m\nid: 9\ndata: {"rewrite":\ndata: 2}\n\n', []);
    assert.equal(out, 'event: m\nid: 9\ndata: {"REWRITE":\ndata: 2}\n\n');
  });

  it('streams an oversized event through untouched without holding it', () => {
    const big = `data: {"rewrite":"${'x'.repeat(5000)}"}\n\ndata: {"rewrite":2}\n\n`;
    const rw = new SseRewriter(upper, 1000);
    const first = rw.push(Buffer.from(big.slice(0, 2000)), false);
    assert.equal(first, big.slice(0, 2000), 'released as soon as it outgrew the bound');
    const rest = rw.push(Buffer.from(big.slice(2000)), true);
    const firstEvent = big.slice(0, big.indexOf('\n\n') + 2);
    assert.equal(first + rest, firstEvent + 'data: {"REWRITE":2}\n\n');
  });

  it('finds the end of an oversized event wherever the chunks are cut', () => {
    const big = `data: {"rewrite":"${'y'.repeat(300)}"}\n\ndata: {"rewrite":2}\n\n`;
    const firstEvent = big.slice(0, big.indexOf('\n\n') + 2);
    const expected = firstEvent + 'data: {"REWRITE":2}\n\n';
    for (let i = 1; i < big.length; i++) {
      for (const j of [i + 1, i + 2, i + 50]) {
        if (j >= big.length) continue;
        assert.equal(feed(new SseRewriter(upper, 100), big, [i, j]), expected, `cuts at ${i}, ${j}`);
      }
    }
  });

  it('extracts data payloads of a whole body', () => {
    assert.deepEqual(sseDataPayloads('event: message\ndata: {"a":1}\n\ndata: b\n\n'), ['{"a":1}', 'b']);
  });
});

describe('JsonBodyRewriter', () => {
  it('holds a small body until the end and rewrites it', () => {
    const rw = new JsonBodyRewriter(upper, 100);
    assert.equal(rw.push(Buffer.from('{"rew'), false).length, 0);
    assert.equal(rw.push(Buffer.from('rite":1}'), true).toString(), '{"REWRITE":1}');
  });

  it('releases a body over the bound as it arrives, unchanged', () => {
    const rw = new JsonBodyRewriter(upper, 10);
    assert.equal(rw.push(Buffer.from('{"rewrite":'), false).toString(), '{"rewrite":');
    assert.equal(rw.push(Buffer.from('1}'), true).toString(), '1}');
  });
});

describe('rewriters that must not pass an unchecked message (refuse mode)', () => {
  const refuse = (): string => '{"error":"too large"}';
  const big = `data: {"rewrite":"${'x'.repeat(200)}"}\n\n`;
  const small = 'data: {"rewrite":"ok"}\n\n';

  it('replaces an SSE event over the bound with the refusal however it is chunked, and still rewrites the rest', () => {
    const stream = small + big + small;
    const expected = 'data: {"REWRITE":"OK"}\n\ndata: {"error":"too large"}\n\ndata: {"REWRITE":"OK"}\n\n';
    const bytes = Buffer.byteLength(stream);
    for (const cuts of [[], [5], [30, 60, 90, 120, 150, 180, 210], Array.from({ length: bytes - 1 }, (_, i) => i + 1)]) {
      assert.equal(feed(new SseRewriter(upper, 100, refuse), stream, cuts), expected, `cuts ${cuts.length}`);
    }
  });

  it('refuses an over-bound event the stream ends inside', () => {
    assert.equal(feed(new SseRewriter(upper, 100, refuse), `data: ${'y'.repeat(300)}`, [50, 150]), 'data: {"error":"too large"}\n\n');
  });

  it('replaces a JSON body over the bound with the refusal, releasing nothing of it', () => {
    const rw = new JsonBodyRewriter(upper, 100, refuse);
    const body = Buffer.from(`{"rewrite":"${'z'.repeat(300)}"}`);
    const out = [rw.push(body.subarray(0, 90), false), rw.push(body.subarray(90, 200), false), rw.push(body.subarray(200), true)];
    assert.deepEqual(out.map((b) => b.toString()), ['', '', '{"error":"too large"}']);
  });
});

describe('SseRewriter with event ids rewritten', () => {
  const stream = 'id: a1\nretry: 500\ndata: \n\n' + 'id: a2\ndata: {"rewrite":1}\n\n' + 'id: a3\ndata: {"keep":1}\n\n' + 'data: {"noid":1}\n\n';
  const expected = 'id: G(a1)\nretry: 500\ndata: \n\n' + 'id: G(a2)\ndata: {"REWRITE":1}\n\n' + 'id: G(a3)\ndata: {"keep":1}\n\n' + 'data: {"noid":1}\n\n';

  it('gives every event with an id the new id, however the stream is cut', () => {
    for (const cuts of [[], [1], [3, 9, 20], [...Array(70).keys()].map((i) => i + 1)]) {
      const rw = new SseRewriter(upper, 1024, null, (id) => `G(${id})`);
      assert.equal(feed(rw, stream, cuts), expected, `cuts ${cuts.join(',')}`);
    }
  });

  it('leaves ids alone without a rewriter', () => {
    assert.equal(feed(new SseRewriter(() => null, 1024), stream, [5]), stream);
  });
});

describe('SseEventReader', () => {
  it('splits events across chunks and CRLFs, with ids and multi-line data', () => {
    const text = 'id: 1\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: comment\n\nevent: other\ndata: x\n\nid: 2\ndata:\n\n';
    const buf = Buffer.from(text);
    for (const size of [1, 2, 7, buf.length]) {
      const reader = new SseEventReader(1024);
      const events = [];
      for (let i = 0; i < buf.length; i += size) events.push(...reader.push(buf.subarray(i, i + size)));
      assert.deepEqual(
        events,
        [
          { id: '1', data: '{"a":\n1}', event: null },
          { id: null, data: 'x', event: 'other' },
          { id: '2', data: '', event: null },
        ],
        `chunks of ${size}`,
      );
    }
  });

  it('skips an event over the bound and reads on after it', () => {
    let dropped = 0;
    const reader = new SseEventReader(64, () => dropped++);
    const events = [...reader.push(Buffer.from(`data: ${'x'.repeat(50)}\n`)), ...reader.push(Buffer.from(`data: ${'y'.repeat(50)}\n\ndata: ok\n\n`))];
    assert.deepEqual(events, [{ id: null, data: 'ok', event: null }]);
    assert.equal(dropped, 1);
  });

  it('writes events back with every data line prefixed', () => {
    assert.equal(sseEventText('7', 'a\nb'), 'id: 7\ndata: a\ndata: b\n\n');
    assert.equal(sseEventText(null, '{}'), 'data: {}\n\n');
  });
});
