import { z } from 'zod';

/**
 * A string that parses as an absolute URL with a host and passes `accept` (scheme rules differ:
 * upstreams take http/https, Redis redis/rediss, identity endpoints https except on loopback).
 */
export function urlSchema(accept: (u: URL) => boolean, message: string): z.ZodString {
  return z.string().refine((v) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      return false;
    }
    return u.hostname !== '' && accept(u);
  }, message);
}

/** A request's `:path` without its query string: what routes and endpoints are told apart by. */
export function pathOf(rawPath: string): string {
  const q = rawPath.indexOf('?');
  return q < 0 ? rawPath : rawPath.slice(0, q);
}
