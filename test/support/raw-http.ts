/**
 * HTTP/1 at the byte level, for requests no HTTP client library will send (HTTP/1.0, unknown
 * methods, malformed request lines, hundreds of headers): what a hostile client can put on the wire.
 */
import { connect } from 'node:net';

export interface RawHttpResponse {
  /** 0 when the connection closed without a status line. */
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
  /** Everything received, for error messages. */
  readonly raw: string;
}

/** Parses one HTTP/1 response out of `raw` (Content-Length, chunked, or up to the close). */
export function parseRawResponse(raw: string): RawHttpResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (!raw.startsWith('HTTP/') || end < 0) return { status: 0, headers: new Map(), body: '', raw };
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = raw.slice(end + 4);
  if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') {
    let out = '';
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, nl), 16);
      if (nl < 0 || !Number.isFinite(size) || size === 0) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  } else if (headers.has('content-length')) {
    body = body.slice(0, Number(headers.get('content-length')));
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body, raw };
}

/** Whether `raw` holds a complete response (so the socket need not wait for the close). */
function complete(raw: string): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = raw.slice(0, end).toLowerCase();
  const len = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (len !== null) return Buffer.byteLength(raw.slice(end + 4)) >= Number(len[1]);
  if (head.includes('transfer-encoding: chunked')) return raw.endsWith('0\r\n\r\n');
  return false;
}

/** Writes `bytes` to `host:port` and reads one response, or what came before the close. */
export function rawHttp(hostPort: string, bytes: string | Buffer, timeoutMs = 10_000): Promise<RawHttpResponse> {
  const colon = hostPort.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)) });
    let raw = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got: ${JSON.stringify(raw.slice(0, 500))}`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(parseRawResponse(raw));
    };
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d: Buffer) => {
      raw += d.toString('latin1');
      if (complete(raw)) finish();
    });
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') finish();
      else {
        clearTimeout(timer);
        reject(e);
      }
    });
  });
}
