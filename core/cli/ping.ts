/**
 * `tyrum ping`: connects with the SDK client (device key in the home, token from --token or
 * $TYRUM_TOKEN), completes the handshake and measures one ping round trip.
 */
import { TyrumClient, loadOrCreateDeviceKey } from '../../sdk/index.js';
import { TyrumError } from '../errors/index.js';
import { resolveHome, homePaths, ensureHome, DEFAULT_PORT, DEFAULT_HOST } from '../config/index.js';
import { parse } from './args.js';
import type { Io } from './main.js';

export async function ping(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { home: { type: 'string' }, url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) {
    io.out('usage: tyrum ping [--url ws://127.0.0.1:8788/ws] [--token T (default $TYRUM_TOKEN)] [--home DIR] [--json]');
    return 0;
  }
  const token = values.token ?? process.env.TYRUM_TOKEN;
  if (!token) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a token is required: --token T or the TYRUM_TOKEN environment variable');
  if (!/^[!-~]+$/.test(token)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'the token contains spaces or non-ASCII characters; pass it exactly as printed');
  const home = resolveHome(values.home);
  ensureHome(home);
  const deviceKey = await loadOrCreateDeviceKey(homePaths(home).clientKey);
  const url = values.url ?? process.env.TYRUM_URL ?? `ws://${DEFAULT_HOST}:${DEFAULT_PORT}/ws`;
  const client = new TyrumClient({ url, token, deviceKey, reconnect: false, device: { label: 'tyrum-cli', platform: process.platform } });
  try {
    const t0 = performance.now();
    const hello = await client.connect();
    const t1 = performance.now();
    const res = await client.request<{ pong: boolean; server_time: string }>('ping', {});
    const t2 = performance.now();
    const out = { url, device_id: hello.device_id, scopes: hello.scopes, server_time: res.server_time, handshake_ms: round(t1 - t0), rtt_ms: round(t2 - t1) };
    io.out(values.json ? JSON.stringify(out) : `pong from ${url} in ${out.rtt_ms} ms (handshake ${out.handshake_ms} ms) as ${hello.device_id} with scopes ${hello.scopes.join(',')}`);
    return 0;
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_CONNECTION', `ping ${url} failed: ${(e as Error).message}`, undefined, { cause: e });
  } finally {
    await client.close();
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
