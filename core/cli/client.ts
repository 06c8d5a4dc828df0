/**
 * Connecting the CLI to a running gateway: the SDK client with the device key kept in the home,
 * the token from --token or $TYRUM_TOKEN, the URL from --url, $TYRUM_URL or the default.
 */
import { TyrumClient, loadOrCreateDeviceKey, type HandshakeResult } from '../../sdk/index.js';
import { TyrumError } from '../errors/index.js';
import { resolveHome, homePaths, ensureHome, DEFAULT_PORT, DEFAULT_HOST } from '../config/home.js';

/** The flags every gateway-talking command accepts. */
export const CLIENT_FLAGS = { home: { type: 'string' }, url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } } as const;

export interface ClientFlags {
  home?: string | undefined;
  url?: string | undefined;
  token?: string | undefined;
}

/** Connects, runs `fn`, and always closes; connection failures become TYRUM_ERR_CONNECTION. */
export async function withClient<T>(flags: ClientFlags, fn: (client: TyrumClient, hello: HandshakeResult, url: string) => Promise<T>): Promise<T> {
  const token = flags.token ?? process.env.TYRUM_TOKEN;
  if (!token) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a token is required: --token T or the TYRUM_TOKEN environment variable');
  if (!/^[!-~]+$/.test(token)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'the token contains spaces or non-ASCII characters; pass it exactly as printed');
  const home = resolveHome(flags.home);
  ensureHome(home);
  const deviceKey = await loadOrCreateDeviceKey(homePaths(home).clientKey);
  const url = flags.url ?? process.env.TYRUM_URL ?? `ws://${DEFAULT_HOST}:${DEFAULT_PORT}/ws`;
  const client = new TyrumClient({ url, token, deviceKey, reconnect: false, device: { label: 'tyrum-cli', platform: process.platform, mode: 'cli' } });
  let hello: HandshakeResult;
  try {
    hello = await client.connect();
  } catch (e) {
    await client.close();
    throw new TyrumError('TYRUM_ERR_CONNECTION', `cannot connect to ${url}: ${(e as Error).message}`, undefined, { cause: e });
  }
  try {
    return await fn(client, hello, url);
  } finally {
    await client.close();
  }
}

/** Maps an SDK remote error (ok:false) to a TyrumError carrying the gateway's message. */
export function remoteError(e: unknown): never {
  const r = e as { name?: string; code?: string; message?: string; details?: Record<string, unknown> };
  if (r && r.name === 'TyrumRemoteError') {
    const issues = Array.isArray(r.details?.issues) ? ` (${(r.details.issues as Array<{ path: string; message: string }>).map((i) => `${i.path}: ${i.message}`).join('; ')})` : '';
    throw new TyrumError(WIRE_TO_CODE[r.code ?? ''] ?? 'TYRUM_ERR_INTERNAL', `${r.message ?? 'request failed'}${issues}`, r.details);
  }
  throw e;
}

const WIRE_TO_CODE: Record<string, 'TYRUM_ERR_INVALID_REQUEST' | 'TYRUM_ERR_FORBIDDEN' | 'TYRUM_ERR_NOT_FOUND' | 'TYRUM_ERR_INVALID_STATE' | 'TYRUM_ERR_CONFLICT' | 'TYRUM_ERR_UNAUTHORIZED' | 'TYRUM_ERR_TIMEOUT' | 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR' | 'TYRUM_ERR_RATE_LIMITED'> = {
  invalid_request: 'TYRUM_ERR_INVALID_REQUEST',
  forbidden: 'TYRUM_ERR_FORBIDDEN',
  not_found: 'TYRUM_ERR_NOT_FOUND',
  invalid_state: 'TYRUM_ERR_INVALID_STATE',
  conflict: 'TYRUM_ERR_CONFLICT',
  unauthorized: 'TYRUM_ERR_UNAUTHORIZED',
  timeout: 'TYRUM_ERR_TIMEOUT',
  sandbox_error: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR',
  rate_limited: 'TYRUM_ERR_RATE_LIMITED',
};
