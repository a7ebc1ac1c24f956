import { GlobSet } from '../lib/glob.js';
import type { MtlsConfig } from './schema.js';

/** The header Envoy sets with the verified client certificate's details. */
export const XFCC_HEADER = 'x-forwarded-client-cert';

/** One element of `x-forwarded-client-cert`: one certificate as one proxy saw it. */
export interface XfccElement {
  readonly by: string | null;
  readonly hash: string | null;
  /** URL-encoded PEM, when Envoy is configured to forward it. */
  readonly cert: string | null;
  readonly chain: string | null;
  readonly subject: string | null;
  readonly uri: readonly string[];
  readonly dns: readonly string[];
}

/** The header could not be parsed. */
export class XfccParseError extends Error {
  override readonly name = 'XfccParseError';
}

const MAX_XFCC_LENGTH = 64 * 1024;

/**
 * Parses `x-forwarded-client-cert`: elements separated by `,`, each a `;`-separated list of
 * `Key=value` pairs; a value containing `,`, `;` or `"` is double-quoted with `\` escaping the next
 * character. Keys are case-insensitive; URI and DNS may repeat; unknown keys are ignored.
 */
export function parseXfcc(header: string): XfccElement[] {
  if (header.length > MAX_XFCC_LENGTH) throw new XfccParseError('header too long');
  const elements: XfccElement[] = [];
  let i = 0;
  const n = header.length;
  while (i <= n) {
    const el: { -readonly [K in keyof XfccElement]: K extends 'uri' | 'dns' ? string[] : XfccElement[K] } = {
      by: null,
      hash: null,
      cert: null,
      chain: null,
      subject: null,
      uri: [],
      dns: [],
    };
    let pairs = 0;
    for (;;) {
      while (i < n && header[i] === ' ') i++;
      const eq = header.indexOf('=', i);
      if (eq < 0) throw new XfccParseError('expected Key=value');
      const key = header.slice(i, eq).trim().toLowerCase();
      if (!/^[a-z]+$/.test(key)) throw new XfccParseError('bad key');
      i = eq + 1;
      let value = '';
      if (header[i] === '"') {
        i++;
        let closed = false;
        while (i < n) {
          const c = header[i]!;
          if (c === '\\') {
            if (i + 1 >= n) throw new XfccParseError('dangling escape');
            value += header[i + 1];
            i += 2;
          } else if (c === '"') {
            closed = true;
            i++;
            break;
          } else {
            value += c;
            i++;
          }
        }
        if (!closed) throw new XfccParseError('unterminated quoted value');
        while (i < n && header[i] === ' ') i++;
        if (i < n && header[i] !== ';' && header[i] !== ',') throw new XfccParseError('text after quoted value');
      } else {
        const start = i;
        while (i < n && header[i] !== ';' && header[i] !== ',') {
          if (header[i] === '"') throw new XfccParseError('quote inside unquoted value');
          i++;
        }
        value = header.slice(start, i).trim();
      }
      pairs++;
      switch (key) {
        case 'by':
          el.by = value;
          break;
        case 'hash':
          el.hash = value;
          break;
        case 'cert':
          el.cert = value;
          break;
        case 'chain':
          el.chain = value;
          break;
        case 'subject':
          el.subject = value;
          break;
        case 'uri':
          if (value !== '') el.uri.push(value);
          break;
        case 'dns':
          if (value !== '') el.dns.push(value);
          break;
        default:
          break;
      }
      if (i >= n || header[i] === ',') break;
      i++; // ';'
    }
    if (pairs === 0) throw new XfccParseError('empty element');
    elements.push(Object.freeze({ ...el, uri: Object.freeze(el.uri), dns: Object.freeze(el.dns) }));
    if (i >= n) break;
    i++; // ','
  }
  return elements;
}

/** A client as its certificate names it. */
export interface CertificateIdentity {
  readonly clientId: string;
  /** The SAN or subject the identity was taken from. */
  readonly certificateName: string;
  readonly tenant: string | null;
  readonly groups: readonly string[];
}

/** Why a certificate gave no identity; for the audit log. */
export type MtlsFailureReason = 'malformed_xfcc' | 'no_certificate_identity' | 'unknown_client';

/** Result of {@link MtlsIdentities.identify}. */
export type MtlsResult =
  | { readonly ok: true; readonly identity: CertificateIdentity }
  | { readonly ok: false; readonly reason: MtlsFailureReason };

interface CompiledClient {
  readonly match: GlobSet;
  readonly clientId: string | null;
  readonly tenant: string | null;
  readonly groups: readonly string[] | null;
}

// Control and format characters have no business in a certificate name that reaches logs.
const SAFE_NAME = /^[^\p{Cc}\p{Cf}]{1,1024}$/u;

/**
 * Maps the verified client certificate Envoy reports to a client.
 *
 * Trust rests on Envoy: with `forward_client_cert_details: SANITIZE_SET` it drops whatever a client
 * sent and sets the header only for verified mTLS connections. Should several elements arrive
 * anyway, only the last one (added by the proxy nearest to us) is believed.
 */
export class MtlsIdentities {
  private readonly clients: readonly CompiledClient[] | null;

  constructor(private readonly cfg: MtlsConfig) {
    this.clients =
      cfg.clients === undefined
        ? null
        : cfg.clients.map((c) => ({
            match: new GlobSet([c.match]),
            clientId: c.client_id ?? null,
            tenant: c.tenant ?? null,
            groups: c.groups.length > 0 ? Object.freeze([...c.groups]) : null,
          }));
  }

  /** The client named by an `x-forwarded-client-cert` value. */
  identify(xfcc: string): MtlsResult {
    let elements: XfccElement[];
    try {
      elements = parseXfcc(xfcc);
    } catch {
      return { ok: false, reason: 'malformed_xfcc' };
    }
    const el = elements.at(-1);
    if (el === undefined) return { ok: false, reason: 'malformed_xfcc' };
    const names = this.namesOf(el).filter((n) => SAFE_NAME.test(n));
    if (names.length === 0) return { ok: false, reason: 'no_certificate_identity' };

    const defaultGroups = Object.freeze([...this.cfg.groups]);
    if (this.clients === null) {
      // Envoy lists SANs in certificate order; without a client list the first one names the client.
      const name = names[0]!;
      return { ok: true, identity: { clientId: name, certificateName: name, tenant: this.cfg.tenant ?? null, groups: defaultGroups } };
    }
    for (const c of this.clients) {
      for (const name of names) {
        if (c.match.test(name)) {
          return {
            ok: true,
            identity: {
              clientId: c.clientId ?? name,
              certificateName: name,
              tenant: c.tenant ?? this.cfg.tenant ?? null,
              groups: c.groups ?? defaultGroups,
            },
          };
        }
      }
    }
    return { ok: false, reason: 'unknown_client' };
  }

  private namesOf(el: XfccElement): readonly string[] {
    switch (this.cfg.identity) {
      case 'uri_san':
        return el.uri;
      case 'dns_san':
        return el.dns;
      case 'subject':
        return el.subject === null || el.subject === '' ? [] : [el.subject];
    }
  }
}
