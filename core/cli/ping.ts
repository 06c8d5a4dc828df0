/** `tyrum ping`: connect, complete the handshake and measure one ping round trip. */
import { parse } from './args.js';
import { withClient, CLIENT_FLAGS } from './client.js';
import type { Io } from './io.js';

export async function ping(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, CLIENT_FLAGS);
  if (values.help) {
    io.out('usage: tyrum ping [--url ws://127.0.0.1:8788/ws] [--token T (default $TYRUM_TOKEN)] [--home DIR] [--json]');
    return 0;
  }
  return withClient(values, async (client, hello, url) => {
    const t0 = performance.now();
    const res = await client.request<{ pong: boolean; server_time: string }>('ping', {});
    const rtt = Math.round((performance.now() - t0) * 100) / 100;
    const out = { url, device_id: hello.device_id, scopes: hello.scopes, server_time: res.server_time, rtt_ms: rtt };
    io.out(values.json ? JSON.stringify(out) : `pong from ${url} in ${rtt} ms as ${hello.device_id} with scopes ${hello.scopes.join(',')}`);
    return 0;
  });
}
