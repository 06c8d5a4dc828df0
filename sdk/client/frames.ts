/**
 * Wire envelopes (PROTOCOL.md, "Envelopes") and a strict parser for frames from the gateway.
 *
 * These hand-written types stand in for the ones generated from `schemas/` until those exist;
 * the envelope shapes are fixed for protocol major version 1. The parser never throws: a bad
 * frame becomes `{ kind: 'invalid' }` so one broken message cannot take the client down.
 */
import type { WireError } from './errors.js';

/** A JSON object (payloads, results and details are always objects, never arrays). */
export type JsonObject = Record<string, unknown>;

/** `{ request_id, type, payload }`, in either direction. */
export interface RequestFrame {
  request_id: string;
  type: string;
  payload: JsonObject;
}

/** A successful response. */
export interface OkResponseFrame {
  request_id: string;
  type: string;
  ok: true;
  result: JsonObject;
}

/** A failed response carrying a wire error. */
export interface ErrorResponseFrame {
  request_id: string;
  type: string;
  ok: false;
  error: WireError;
}

export type ResponseFrame = OkResponseFrame | ErrorResponseFrame;

/** A server push; delivered at least once, so consumers dedupe by `event_id`. */
export interface EventFrame {
  event_id: string;
  type: string;
  occurred_at: string;
  payload: JsonObject;
}

/** Classification of one inbound text frame. */
export type InboundFrame =
  | { kind: 'request'; frame: RequestFrame }
  | { kind: 'response'; frame: ResponseFrame }
  | { kind: 'event'; frame: EventFrame }
  | { kind: 'invalid'; reason: string };

/**
 * Upper bound on ids and type names accepted from the gateway. PROTOCOL.md sets none; the
 * client keeps ids in bounded dedupe caches and this keeps those caches small in bytes too.
 */
export const MAX_ID_LENGTH = 256;

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** True for a non-null, non-array object. */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse and classify one text frame from the gateway. Envelopes are strict (PROTOCOL.md:
 * unknown keys are rejected); payload and result contents are left to the caller.
 */
export function parseFrame(text: string): InboundFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return invalid('frame is not valid JSON');
  }
  if (!isJsonObject(value)) return invalid('frame is not a JSON object');
  if ('event_id' in value) return parseEvent(value);
  if ('ok' in value) return parseResponse(value);
  if ('request_id' in value) return parseRequest(value);
  return invalid('frame is neither a request, a response nor an event');
}

function parseEvent(v: JsonObject): InboundFrame {
  const extra = unknownKeys(v, ['event_id', 'type', 'occurred_at', 'payload']);
  if (extra) return invalid(`event has unknown key ${extra}`);
  if (!isId(v.event_id)) return invalid('event.event_id must be a non-empty string');
  if (!isId(v.type)) return invalid('event.type must be a non-empty string');
  if (typeof v.occurred_at !== 'string' || !ISO_8601.test(v.occurred_at) || Number.isNaN(Date.parse(v.occurred_at))) {
    return invalid('event.occurred_at must be an ISO-8601 timestamp');
  }
  if (!isJsonObject(v.payload)) return invalid('event.payload must be an object');
  return { kind: 'event', frame: { event_id: v.event_id, type: v.type, occurred_at: v.occurred_at, payload: v.payload } };
}

function parseResponse(v: JsonObject): InboundFrame {
  if (!isId(v.request_id)) return invalid('response.request_id must be a non-empty string');
  if (!isId(v.type)) return invalid('response.type must be a non-empty string');
  if (v.ok === true) {
    const extra = unknownKeys(v, ['request_id', 'type', 'ok', 'result']);
    if (extra) return invalid(`response has unknown key ${extra}`);
    if (!isJsonObject(v.result)) return invalid('response.result must be an object');
    return { kind: 'response', frame: { request_id: v.request_id, type: v.type, ok: true, result: v.result } };
  }
  if (v.ok === false) {
    const extra = unknownKeys(v, ['request_id', 'type', 'ok', 'error']);
    if (extra) return invalid(`response has unknown key ${extra}`);
    const e = v.error;
    if (!isJsonObject(e)) return invalid('response.error must be an object');
    const extraE = unknownKeys(e, ['code', 'message', 'details']);
    if (extraE) return invalid(`response.error has unknown key ${extraE}`);
    if (!isId(e.code)) return invalid('response.error.code must be a non-empty string');
    if (typeof e.message !== 'string') return invalid('response.error.message must be a string');
    if (e.details !== undefined && !isJsonObject(e.details)) return invalid('response.error.details must be an object');
    const error: WireError = { code: e.code, message: e.message };
    if (e.details !== undefined) error.details = e.details;
    return { kind: 'response', frame: { request_id: v.request_id, type: v.type, ok: false, error } };
  }
  return invalid('response.ok must be a boolean');
}

function parseRequest(v: JsonObject): InboundFrame {
  const extra = unknownKeys(v, ['request_id', 'type', 'payload']);
  if (extra) return invalid(`request has unknown key ${extra}`);
  if (!isId(v.request_id)) return invalid('request.request_id must be a non-empty string');
  if (!isId(v.type)) return invalid('request.type must be a non-empty string');
  if (!isJsonObject(v.payload)) return invalid('request.payload must be an object');
  return { kind: 'request', frame: { request_id: v.request_id, type: v.type, payload: v.payload } };
}

function isId(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH;
}

function unknownKeys(v: JsonObject, allowed: readonly string[]): string | undefined {
  // Report at most one key, quoted and truncated: the reason may end up in logs.
  const k = Object.keys(v).find((key) => !allowed.includes(key));
  return k === undefined ? undefined : JSON.stringify(k.slice(0, 64));
}

function invalid(reason: string): InboundFrame {
  return { kind: 'invalid', reason };
}
