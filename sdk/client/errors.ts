/**
 * Errors raised by the client SDK.
 *
 * Two families that never overlap, as in the MCP TypeScript SDK:
 * - `TyrumRemoteError`: the gateway answered a request with `ok: false`. Its `code` is a wire
 *   code from PROTOCOL.md (`forbidden`, `not_found`, ...); the request reached the gateway and
 *   was refused or failed there.
 * - `TyrumClientError` and subclasses: something went wrong on this side or on the link
 *   (closed socket, local timeout, failed handshake, malformed frame). The gateway may or may
 *   not have seen the request; callers must not read these as a gateway verdict.
 */

/** Wire error object as it appears in a failed response. */
export interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** The gateway refused or failed a request (a response with `ok: false`). */
export class TyrumRemoteError extends Error {
  /** Wire error code (PROTOCOL.md vocabulary; unknown future codes pass through unchanged). */
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  /** The `type` of the request that failed. */
  readonly requestType: string;
  readonly requestId: string;

  constructor(error: WireError, requestType: string, requestId: string) {
    super(`${requestType}: ${error.code}: ${error.message}`);
    this.name = 'TyrumRemoteError';
    this.code = error.code;
    this.details = error.details;
    this.requestType = requestType;
    this.requestId = requestId;
  }
}

/**
 * Local error codes. `TYRUM_ERR_CONNECTION` and `TYRUM_ERR_TIMEOUT` mean the same as in the
 * gateway's registry so the CLI can print one vocabulary.
 */
export type ClientErrorCode =
  | 'TYRUM_ERR_CONNECTION'
  | 'TYRUM_ERR_HANDSHAKE'
  | 'TYRUM_ERR_TIMEOUT'
  | 'TYRUM_ERR_PROTOCOL'
  | 'TYRUM_ERR_DEVICE_KEY';

/** Base class of every error that originates in the client, not in the gateway. */
export class TyrumClientError extends Error {
  readonly code: ClientErrorCode;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TyrumClientError';
    this.code = code;
  }
}

/** Details about how a connection ended, when known. */
export interface ConnectionEndInfo {
  /** WebSocket close code (e.g. 4007, 1006). */
  closeCode?: number;
  closeReason?: string;
  /** HTTP status when the upgrade itself was refused (401, 403, 400, 502...). */
  httpStatus?: number;
  /** True when the client will not reconnect on its own after this failure. */
  terminal?: boolean;
}

/** The link is down, was closed, or could not be opened. */
export class TyrumConnectionError extends TyrumClientError {
  readonly closeCode: number | undefined;
  readonly closeReason: string | undefined;
  readonly httpStatus: number | undefined;
  readonly terminal: boolean;

  constructor(message: string, info: ConnectionEndInfo = {}, options?: { cause?: unknown }, code: ClientErrorCode = 'TYRUM_ERR_CONNECTION') {
    super(code, message, options);
    this.name = 'TyrumConnectionError';
    this.closeCode = info.closeCode;
    this.closeReason = info.closeReason;
    this.httpStatus = info.httpStatus;
    this.terminal = info.terminal ?? false;
  }
}

/**
 * The connection was opened but authentication or the connect.init/connect.proof exchange
 * failed: HTTP 401/403/400 at the upgrade, a handshake close code (4001-4007), a refused
 * handshake request (`remote` holds the wire error), or a malformed handshake answer.
 */
export class TyrumHandshakeError extends TyrumConnectionError {
  /** The gateway's wire error when it answered a handshake step with `ok: false`. */
  readonly remote: TyrumRemoteError | undefined;

  constructor(message: string, info: ConnectionEndInfo = {}, remote?: TyrumRemoteError) {
    super(message, info, remote ? { cause: remote } : undefined, 'TYRUM_ERR_HANDSHAKE');
    this.name = 'TyrumHandshakeError';
    this.remote = remote;
  }
}

/** A request got no response within its timeout. The gateway may still act on it. */
export class TyrumTimeoutError extends TyrumClientError {
  readonly requestType: string;
  readonly requestId: string;
  readonly timeoutMs: number;

  constructor(requestType: string, requestId: string, timeoutMs: number) {
    super('TYRUM_ERR_TIMEOUT', `${requestType}: no response within ${timeoutMs} ms`);
    this.name = 'TyrumTimeoutError';
    this.requestType = requestType;
    this.requestId = requestId;
    this.timeoutMs = timeoutMs;
  }
}

/** The gateway sent something that does not follow PROTOCOL.md. */
export class TyrumProtocolError extends TyrumClientError {
  constructor(message: string) {
    super('TYRUM_ERR_PROTOCOL', message);
    this.name = 'TyrumProtocolError';
  }
}

/** The device key file is missing, unreadable, too permissive or not an Ed25519 key. */
export class TyrumDeviceKeyError extends TyrumClientError {
  readonly path: string;

  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super('TYRUM_ERR_DEVICE_KEY', message, options);
    this.name = 'TyrumDeviceKeyError';
    this.path = path;
  }
}
