/**
 * Tyrum SDK, public entry point.
 *
 * The client half lets operator tools and nodes talk to a gateway over the wire protocol
 * (PROTOCOL.md). It depends only on node built-ins and `ws` so it can ship on its own.
 */
export {
  TyrumClient,
  SUBPROTOCOL,
  AUTH_SUBPROTOCOL_PREFIX,
  TERMINAL_CLOSE_CODES,
  TERMINAL_HTTP_STATUSES,
  type AuthVia,
  type Capability,
  type CloseInfo,
  type HandshakeResult,
  type RequestOptions,
  type RequestOutcome,
  type RespondFn,
  type Role,
  type TyrumClientEvents,
  type TyrumClientOptions,
} from './client/client.js';
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './client/backoff.js';
export {
  TyrumClientError,
  TyrumConnectionError,
  TyrumDeviceKeyError,
  TyrumHandshakeError,
  TyrumProtocolError,
  TyrumRemoteError,
  TyrumTimeoutError,
  type ClientErrorCode,
  type ConnectionEndInfo,
  type WireError,
} from './client/errors.js';
export { parseFrame, type EventFrame, type InboundFrame, type JsonObject, type RequestFrame, type ResponseFrame } from './client/frames.js';
export { deviceIdentity, loadOrCreateDeviceKey, proofTranscript, signProof, type DeviceIdentity, type ProofFields } from './client/identity.js';
export {
  TyrumNode,
  FileCredentialStore,
  NodeTaskError,
  nodeStatePaths,
  type CredentialStore,
  type NodeCapability,
  type NodeCapabilityResult,
  type NodeDispatchContext,
  type NodeStatus,
  type TyrumNodeOptions,
} from './node/runtime.js';
