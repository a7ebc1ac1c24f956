import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * Envoy's xDS API (protos/xds: the files the resources the gateway serves need, from Envoy's
 * published API), loaded once, and the encoding of a resource from the JSON shape Envoy's own
 * config uses (the bootstrap's YAML): snake_case fields, durations as "5s", wrapped scalars as
 * plain values, `Struct`s as objects, `Any` as `{"@type": …, …fields}`. A field the API does not
 * have is an error naming its path, so drift between the bootstrap and the protos cannot go unseen.
 */

const PROTO_ROOT = fileURLToPath(new URL('../../../protos/xds/', import.meta.url));
const PROTOBUF_ROOT = fileURLToPath(new URL('../../../node_modules/protobufjs/', import.meta.url));

/** The resources' files; their imports bring the rest. */
const FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/trace/v3/opentelemetry.proto',
  'envoy/extensions/access_loggers/filters/cel/v3/cel.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/filters/http/buffer/v3/buffer.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/stateful_session/v3/stateful_session.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/http/stateful_session/envelope/v3/envelope.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
];

let loaded: protobuf.Root | null = null;

/** The xDS API, loaded on first use (about a tenth of a second). */
export function xdsRoot(): protobuf.Root {
  if (loaded !== null) return loaded;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? `${PROTOBUF_ROOT}${target}` : `${PROTO_ROOT}${target}`);
  root.loadSync(FILES, { keepCase: true });
  root.resolveAll();
  loaded = root;
  return root;
}

const TYPE_PREFIX = 'type.googleapis.com/';

/** A resource (or any message) from its JSON shape, as `Any` bytes of the type its URL names. */
export function encodeMessage(typeName: string, json: unknown): Uint8Array {
  const type = xdsRoot().lookupType(typeName);
  return type.encode(type.fromObject(toProto(type, json, typeName) as Record<string, unknown>)).finish();
}

/** The type name of a `type.googleapis.com/<name>` URL. */
export function typeOfUrl(url: string): string {
  if (!url.startsWith(TYPE_PREFIX)) throw new Error(`not a type URL: ${url}`);
  return url.slice(TYPE_PREFIX.length);
}

/** One message's JSON shape turned into the object protobufjs encodes from. */
function toProto(type: protobuf.Type, json: unknown, path: string): unknown {
  const wellKnown = WELL_KNOWN.get(type.fullName.slice(1));
  if (wellKnown !== undefined) return wellKnown(json, path);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: expected an object for ${type.fullName.slice(1)}`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    if (value === undefined) continue;
    const field = type.fields[key];
    if (field === undefined) throw new Error(`${path}.${key}: ${type.fullName.slice(1)} has no such field`);
    field.resolve();
    const at = `${path}.${key}`;
    const one = (v: unknown, p: string): unknown => (field.resolvedType instanceof protobuf.Type ? toProto(field.resolvedType, v, p) : v);
    if (field.map) {
      out[key] = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, one(v, `${at}.${k}`)]));
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${at}: expected a list`);
      out[key] = value.map((v, i) => one(v, `${at}[${i}]`));
    } else {
      out[key] = one(value, at);
    }
  }
  return out;
}

/** A duration's JSON shape ("1.5s"; a number of seconds is taken too). */
function duration(json: unknown, path: string): unknown {
  const text = typeof json === 'number' ? `${json}s` : json;
  const m = typeof text === 'string' ? /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(text) : null;
  if (m === null) throw new Error(`${path}: expected a duration such as "1.5s"`);
  const sign = m[1] === '-' ? -1 : 1;
  return { seconds: sign * Number(m[2]), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

/** A JSON value as `google.protobuf.Value` (protobufjs's built-in definition names its fields in camelCase). */
function value(json: unknown): unknown {
  if (json === null) return { nullValue: 0 };
  if (typeof json === 'number') return { numberValue: json };
  if (typeof json === 'string') return { stringValue: json };
  if (typeof json === 'boolean') return { boolValue: json };
  if (Array.isArray(json)) return { listValue: { values: json.map(value) } };
  return { structValue: struct(json) };
}

function struct(json: unknown): unknown {
  return { fields: Object.fromEntries(Object.entries(json as Record<string, unknown>).map(([k, v]) => [k, value(v)])) };
}

/** `Any` from `{"@type": url, …fields}`: the named message, encoded. */
function any(json: unknown, path: string): unknown {
  if (typeof json !== 'object' || json === null) throw new Error(`${path}: expected an object with "@type"`);
  const { '@type': url, ...fields } = json as Record<string, unknown>;
  if (typeof url !== 'string') throw new Error(`${path}: "@type" is missing`);
  const name = typeOfUrl(url);
  return { type_url: url, value: encodeMessage(name, fields) };
}

const wrapped = (json: unknown): unknown => ({ value: json });

/** Types whose JSON shape is not their fields. */
const WELL_KNOWN: ReadonlyMap<string, (json: unknown, path: string) => unknown> = new Map([
  ['google.protobuf.Duration', duration],
  ['google.protobuf.Struct', (json: unknown) => struct(json)],
  ['google.protobuf.Value', (json: unknown) => value(json)],
  ['google.protobuf.ListValue', (json: unknown) => ({ values: (json as unknown[]).map(value) })],
  ['google.protobuf.Any', any],
  ['google.protobuf.BoolValue', wrapped],
  ['google.protobuf.UInt32Value', wrapped],
  ['google.protobuf.Int32Value', wrapped],
  ['google.protobuf.UInt64Value', wrapped],
  ['google.protobuf.Int64Value', wrapped],
  ['google.protobuf.DoubleValue', wrapped],
  ['google.protobuf.FloatValue', wrapped],
  ['google.protobuf.StringValue', wrapped],
  ['google.protobuf.BytesValue', wrapped],
]);
