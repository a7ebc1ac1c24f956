import type { ContinueDecision, HeaderSet, RespondDecision, StreamDecision } from '../request/decision.js';
import { METADATA_NAMESPACE, ROUTE_METADATA_NAMESPACE } from '../envoy/contract.js';
import type { ProcessingResponseMsg } from './proto.js';

/** The ext_proc messages the processor replies to with a decision. */
export type Phase = 'request_headers' | 'response_headers' | 'request_body' | 'response_body';

function headerOption(h: HeaderSet): Record<string, unknown> {
  return { header: { key: h.key, raw_value: Buffer.from(h.value) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

function structOf(md: Readonly<Record<string, string>>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(md)) fields[k] = { stringValue: v };
  return { structValue: { fields } };
}

function metadataStruct(md: Readonly<Record<string, string>> | undefined, route?: Readonly<Record<string, string>>): Record<string, unknown> {
  const namespaces: Record<string, unknown> = {};
  if (md !== undefined) namespaces[METADATA_NAMESPACE] = structOf(md);
  if (route !== undefined) namespaces[ROUTE_METADATA_NAMESPACE] = structOf(route);
  return { fields: namespaces };
}

function common(d: ContinueDecision, phase: Phase): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if ((d.setHeaders?.length ?? 0) > 0 || (d.removeHeaders?.length ?? 0) > 0) {
    out['header_mutation'] = {
      set_headers: (d.setHeaders ?? []).map(headerOption),
      remove_headers: d.removeHeaders ?? [],
    };
  }
  if (d.body !== undefined) {
    out['body_mutation'] = d.body.length === 0 ? { clear_body: true } : { body: d.body };
  }
  if (d.clearRouteCache === true && phase.startsWith('request')) out['clear_route_cache'] = true;
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * The first message of a streamed immediate response: the status and headers (the body follows
 * in {@link streamedBody} messages). Envoy takes it only as the reply to request headers.
 */
export function streamedHeaders(d: StreamDecision): ProcessingResponseMsg {
  const headers = [{ key: ':status', raw_value: Buffer.from(String(d.status)) }, ...d.headers.map((h) => ({ key: h.key, raw_value: Buffer.from(h.value) }))];
  const res: ProcessingResponseMsg = { streamed_immediate_response: { headers_response: { headers: { headers }, end_of_stream: false } } };
  if (d.metadata !== undefined) res['dynamic_metadata'] = metadataStruct(d.metadata);
  return res;
}

/** One chunk of a streamed immediate response's body; `end` closes the response. */
export function streamedBody(chunk: string, end: boolean): ProcessingResponseMsg {
  return { streamed_immediate_response: { body_response: { body: Buffer.from(chunk), end_of_stream: end } } };
}

/** Renders a decision as the ProcessingResponse for the phase it answers. */
export function toProcessingResponse(d: ContinueDecision | RespondDecision, phase: Phase): ProcessingResponseMsg {
  if (d.kind === 'respond') {
    const res: ProcessingResponseMsg = {
      immediate_response: {
        status: { code: d.status },
        headers: { set_headers: d.headers.map(headerOption) },
        body: Buffer.from(d.body),
        details: d.details,
      },
    };
    if (d.metadata !== undefined) res['dynamic_metadata'] = metadataStruct(d.metadata);
    return res;
  }
  const response = common(d, phase);
  const res: ProcessingResponseMsg = { [phase]: response === undefined ? {} : { response } };
  if (d.responseBodyMode !== undefined && phase.endsWith('headers')) {
    res['mode_override'] = { response_body_mode: d.responseBodyMode };
  }
  if (d.metadata !== undefined || d.routeMetadata !== undefined) res['dynamic_metadata'] = metadataStruct(d.metadata, d.routeMetadata);
  return res;
}
