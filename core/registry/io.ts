/**
 * How a tool's JSON arguments become the bytes its export reads, and how the bytes it writes
 * become the tool's result (manifest `contributes.tools[].input` / `.output`): JSON by default,
 * or the raw bytes of one declared string field (text: UTF-8; bytes: base64 in the JSON value).
 * One implementation for the gateway (PluginHost) and the author harness (`tyrum plugin test`).
 */
import type { ToolIo } from '../../schemas/index.js';
import { TyrumError } from '../errors/index.js';

/** A text or bytes encoding mapped from/to one string field (checked at install). */
export type RawIo = { encoding: 'text' | 'bytes'; field: string };

/** A declared text/bytes encoding, or null for JSON (declared or by default). */
export function rawIo(io: ToolIo | undefined): RawIo | null {
  return io !== undefined && io.encoding !== 'json' && io.field !== undefined ? { encoding: io.encoding, field: io.field } : null;
}

/** Standard base64 (RFC 4648 section 4), padded. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Refuses arguments that passed a tool's input schema but cannot become its input: for a declared
 * text/bytes field, a value that is not a string or (bytes) not base64. Encodes nothing: the
 * gateway checks a call before a run exists, and {@link toolInput} checks again when it runs.
 */
export function checkToolInput(toolId: string, io: RawIo | null, args: Record<string, unknown>): void {
  if (io !== null) rawArgument(toolId, io, args);
}

/**
 * The bytes a tool's export receives for arguments that passed its input schema: their JSON
 * text, or the raw bytes of the declared field (text: UTF-8; bytes: decoded base64).
 */
export function toolInput(toolId: string, io: RawIo | null, args: Record<string, unknown>): Uint8Array {
  if (io === null) return Buffer.from(JSON.stringify(args), 'utf8');
  const value = rawArgument(toolId, io, args);
  return io.encoding === 'text' ? Buffer.from(value, 'utf8') : Buffer.from(value, 'base64');
}

/** The declared field's string value, checked as {@link checkToolInput} describes. */
function rawArgument(toolId: string, io: RawIo, args: Record<string, unknown>): string {
  const value = args[io.field];
  if (typeof value !== 'string') {
    throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `argument "${io.field}" of ${toolId} must be a string (its input encoding is ${io.encoding})`, { issues: [{ path: pointer(io.field), message: 'must be string' }] });
  }
  if (io.encoding === 'bytes' && !BASE64.test(value)) {
    throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `argument "${io.field}" of ${toolId} must be base64 (its input encoding is bytes)`, { issues: [{ path: pointer(io.field), message: 'must be base64 (RFC 4648, padded)' }] });
  }
  return value;
}

/** The RFC 6901 pointer to a top-level argument. */
function pointer(field: string): string {
  return `/${field.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The result of a call from the export's raw output: parsed JSON (no output at all is null), or
 * the raw bytes wrapped as `{ <field>: text | base64 }`. Checked against the output schema after.
 */
export function toolOutput(toolId: string, io: RawIo | null, raw: Uint8Array): unknown {
  if (io === null) {
    if (raw.byteLength === 0) return null;
    try {
      return JSON.parse(Buffer.from(raw).toString('utf8'));
    } catch {
      throw new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', `${toolId} returned output that is not JSON`, { reason: 'plugin_error' });
    }
  }
  if (io.encoding === 'bytes') return { [io.field]: Buffer.from(raw).toString('base64') };
  try {
    return { [io.field]: strictUtf8.decode(raw) };
  } catch {
    throw new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', `${toolId} returned output that is not valid UTF-8 text (its output encoding is text)`, { reason: 'plugin_error' });
  }
}

/** Why a result failed its output schema: an export that set no output returned the result null. */
export function outputMismatch(toolId: string, raw: Uint8Array, output: unknown): string {
  const what = output === null && raw.byteLength === 0 ? 'returned no output (the result null), which its output schema does not accept' : 'returned output that does not match its output schema';
  return `${toolId} ${what}`;
}
