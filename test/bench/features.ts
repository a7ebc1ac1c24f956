/**
 * What the feature rows of the benchmark need besides the gateway itself:
 *
 * - (e) an API key and its SHA-256 (what `mcp-gateway hash-key` prints);
 * - (f) a JWT issuer: an RS256 key pair made here, its public key served as a JWKS from a small
 *   HTTP server on 127.0.0.1 that counts how often it is fetched, and one signed token per worker;
 * - (h) a throwaway redis-server child (no persistence, loopback only) and a minimal RESP client
 *   for PING and `INFO commandstats`, so the bench can count the commands the gateway sends.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { JwtIssuerSchema } from '../../src/auth/schema.js';
import { JwtVerifier } from '../../src/auth/jwt.js';
import { spawnLogged, type BenchChild } from './children.js';

// ------------------------------------------------------------------------------------- API key

/** A random API key (long enough for `hash-key`) and the hash the gateway config stores. */
export function makeApiKey(): { key: string; sha256: string } {
  const key = `bench_${randomBytes(24).toString('base64url')}`;
  return { key, sha256: sha256Hex(key) };
}

// ------------------------------------------------------------------------------------- JWT issuer

const KID = 'bench-rs256';

/** An RS256 issuer whose JWKS is served over HTTP on 127.0.0.1, counting fetches. */
export class BenchIssuer {
  /** Requests the JWKS endpoint has answered so far. */
  fetches = 0;
  readonly audience = 'mcp-gateway-bench';
  private server: Server | null = null;
  private jwk: JWK | null = null;
  private privateKey: CryptoKey | null = null;
  private port = 0;

  /** Makes the key pair and starts the JWKS server. */
  async start(): Promise<void> {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    this.privateKey = privateKey;
    this.jwk = { ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
    const body = JSON.stringify({ keys: [this.jwk] });
    const server = createServer((req, res) => {
      this.fetches += 1;
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600' }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** The `iss` the tokens carry (the JWKS server's origin). */
  get issuer(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get jwksUri(): string {
    return `${this.issuer}/.well-known/jwks.json`;
  }

  /** The `auth.jwt` entry for the gateway config. */
  issuerConfig(): Record<string, unknown> {
    return { issuer: this.issuer, audiences: [this.audience], jwks_uri: this.jwksUri, algorithms: ['RS256'] };
  }

  /** One token per worker (`sub` bench-client-<i>), valid for `ttlS` seconds. */
  async tokens(count: number, ttlS = 3 * 3600): Promise<string[]> {
    const key = this.privateKey;
    if (key === null) throw new Error('BenchIssuer not started');
    const now = Math.floor(Date.now() / 1000);
    return Promise.all(
      Array.from({ length: count }, (_, i) =>
        new SignJWT({ scope: 'mcp' })
          .setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' })
          .setIssuer(this.issuer)
          .setAudience(this.audience)
          .setSubject(`bench-client-${i}`)
          .setIssuedAt(now)
          .setExpirationTime(now + ttlS)
          .sign(key),
      ),
    );
  }

  /**
   * CPU cost of one full verification (what a token not yet in the gateway's verified-token cache
   * costs), measured in this process with the gateway's own verifier and caching turned off: this
   * process's CPU time (all threads) per `verify`, over `n` calls after a few warm-up calls. Meant
   * to run when nothing else runs here.
   */
  async uncachedVerifyMs(n = 300): Promise<number> {
    if (this.jwk === null) throw new Error('BenchIssuer not started');
    const cfg = JwtIssuerSchema.parse({ issuer: this.issuer, audiences: [this.audience], jwks: { keys: [this.jwk] }, algorithms: ['RS256'] });
    const verifier = await JwtVerifier.create(cfg, { cacheSize: 0 });
    const [token] = await this.tokens(1);
    if (token === undefined) throw new Error('no token');
    for (let i = 0; i < 20; i++) await verifier.verify(token);
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++) await verifier.verify(token);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1000 / n;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// ------------------------------------------------------------------------------------- Redis

/**
 * Sends one inline command to Redis on a fresh connection and returns the reply as text (simple
 * string, error or bulk string; enough for PING and INFO).
 */
export function redisCommand(port: number, command: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const finish = (err: Error | null, value?: string): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err !== null) reject(err);
      else resolve(value ?? '');
    };
    const timer = setTimeout(() => finish(new Error(`redis ${command}: no reply within ${timeoutMs} ms`)), timeoutMs);
    sock.once('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.subarray(0, eol).toString('latin1');
      if (head.startsWith('+')) finish(null, head.slice(1));
      else if (head.startsWith('-')) finish(new Error(`redis ${command}: ${head.slice(1)}`));
      else if (head.startsWith('$')) {
        const len = Number(head.slice(1));
        if (len < 0) finish(null, '');
        else if (buf.length >= eol + 2 + len) finish(null, buf.subarray(eol + 2, eol + 2 + len).toString('utf8'));
      } else finish(new Error(`redis ${command}: unexpected reply ${head.slice(0, 80)}`));
    });
    sock.once('error', (err) => finish(err));
  });
}

/** Commands Redis has executed so far, from `INFO commandstats`. */
export interface RedisCommandCounts {
  /** EVALSHA + EVAL calls: one per script the gateway runs. */
  readonly scripts: number;
  /** Every command except INFO, those run inside scripts included. */
  readonly commands: number;
  /**
   * Socket reads Redis processed (INFO stats `total_reads_processed`): the round trips, since
   * commands a client pipelines arrive in one read.
   */
  readonly reads: number;
}

export async function redisCommandCounts(port: number): Promise<RedisCommandCounts> {
  const text = await redisCommand(port, 'INFO commandstats');
  let scripts = 0;
  let commands = 0;
  for (const line of text.split('\r\n')) {
    const m = /^cmdstat_([a-z|_-]+):calls=(\d+)/.exec(line);
    if (m === null) continue;
    const name = m[1] ?? '';
    const calls = Number(m[2]);
    if (name === 'info') continue;
    commands += calls;
    if (name === 'evalsha' || name === 'eval') scripts += calls;
  }
  const stats = await redisCommand(port, 'INFO stats');
  const reads = Number(/^total_reads_processed:(\d+)/m.exec(stats)?.[1] ?? 'NaN');
  return { scripts, commands, reads };
}

/** Starts `redis-server` on 127.0.0.1:`port` (no persistence, no config file); resolves once it answers PING. */
export async function startRedisChild(opts: { port: number; dir: string; timeoutMs: number }): Promise<BenchChild> {
  const args = [
    '--port', String(opts.port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--dir', opts.dir,
    '--daemonize', 'no',
    '--protected-mode', 'yes',
    '--loglevel', 'warning',
  ];
  const child = spawnLogged('redis-server', 'redis-server', args, join(opts.dir, 'redis.log'));
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const exited = child.exitDescription();
    if (exited !== undefined) throw new Error(`redis-server ${exited} before answering PING\n${child.logTail()}`);
    if ((await redisCommand(opts.port, 'PING', 500).catch(() => '')) === 'PONG') return child;
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`redis-server: no PONG after ${opts.timeoutMs} ms\n${child.logTail()}`);
    }
    await sleep(25);
  }
}
