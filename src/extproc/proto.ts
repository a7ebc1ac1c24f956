import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_PATH = fileURLToPath(new URL('../../../protos/ext_proc.proto', import.meta.url));

/** The ExternalProcessor service definition, loaded once. */
export function loadExternalProcessorService(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } };
  };
  return pkg.envoy.service.ext_proc.v3.ExternalProcessor.service;
}

/** `HeaderValue` as decoded. */
export interface HeaderValueMsg {
  key: string;
  value?: string;
  raw_value?: Buffer;
}

/** `HttpHeaders` as decoded. */
export interface HttpHeadersMsg {
  headers?: { headers?: HeaderValueMsg[] };
  end_of_stream?: boolean;
}

/** `HttpBody` as decoded. */
export interface HttpBodyMsg {
  body?: Buffer;
  end_of_stream?: boolean;
}

/** `ProcessingRequest` as decoded (oneof `request` names the phase). */
export interface ProcessingRequestMsg {
  request?: 'request_headers' | 'response_headers' | 'request_body' | 'response_body' | 'request_trailers' | 'response_trailers';
  request_headers?: HttpHeadersMsg;
  response_headers?: HttpHeadersMsg;
  request_body?: HttpBodyMsg;
  response_body?: HttpBodyMsg;
  /** The processing mode in effect, sent with the first message of a stream. */
  protocol_config?: { request_body_mode?: string; response_body_mode?: string };
  /** CEL attributes Envoy sends with the first message of a stream, by filter name. */
  attributes?: Record<string, StructMsg>;
}

/** `google.protobuf.Struct` as decoded (field names stay camelCase under keepCase). */
export interface StructMsg {
  fields?: Record<string, { stringValue?: string; numberValue?: number; boolValue?: boolean; kind?: string }>;
}

/** `ProcessingResponse` as we encode it. */
export type ProcessingResponseMsg = Record<string, unknown>;
