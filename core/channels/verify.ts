/**
 * Webhook authenticity, checked by the host before a channel plugin sees a byte. Pure (the clock is
 * passed in) and constant-time in the secret comparison.
 *
 * - telegram_secret_token: Telegram sends the `secret_token` given to setWebhook back in
 *   `X-Telegram-Bot-Api-Secret-Token`. No timestamp: Telegram retries with the same update_id,
 *   which the inbound dedupe absorbs.
 * - slack_v0: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:<ts>:<body>")>` with
 *   `X-Slack-Request-Timestamp: <ts>` inside the replay window (default 5 minutes, both ways).
 * - hmac_sha256 (the generic signed webhook): `X-Tyrum-Signature: sha256=<hex HMAC-SHA256(secret,
 *   "<ts>.<body>")>` with `X-Tyrum-Timestamp: <unix seconds>` inside the window. The gateway signs
 *   its own outbound webhook requests the same way ({@link signHmac}).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ChannelVerifyScheme } from '../../schemas/index.js';

export const REPLAY_WINDOW_DEFAULT_S = 300;

export type VerifyResult = { ok: true } | { ok: false; reason: 'missing_header' | 'bad_signature' | 'stale_timestamp' | 'bad_timestamp' };

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Lengths are not secret (a hex digest has a fixed length); the contents are compared in constant time.
  return x.length === y.length && timingSafeEqual(x, y);
}

function hmacHex(secret: Buffer | string, data: Buffer): string {
  return createHmac('sha256', secret).update(data).digest('hex');
}

function timestampOk(raw: string | undefined, nowMs: number, windowS: number): VerifyResult | null {
  if (raw === undefined) return { ok: false, reason: 'missing_header' };
  if (!/^[0-9]{1,12}$/.test(raw)) return { ok: false, reason: 'bad_timestamp' };
  if (Math.abs(nowMs / 1000 - Number(raw)) > windowS) return { ok: false, reason: 'stale_timestamp' };
  return null;
}

/**
 * Checks one webhook. `headers` are lower-case names (node's IncomingHttpHeaders); `body` the raw
 * bytes exactly as received.
 */
export function verifyWebhook(
  scheme: ChannelVerifyScheme,
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  secret: Buffer,
  nowMs: number,
  windowS: number = REPLAY_WINDOW_DEFAULT_S,
): VerifyResult {
  const h = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? undefined : v;
  };
  switch (scheme) {
    case 'telegram_secret_token': {
      const got = h('x-telegram-bot-api-secret-token');
      if (got === undefined) return { ok: false, reason: 'missing_header' };
      return equal(got, secret.toString('utf8')) ? { ok: true } : { ok: false, reason: 'bad_signature' };
    }
    case 'slack_v0': {
      const ts = h('x-slack-request-timestamp');
      const sig = h('x-slack-signature');
      if (sig === undefined) return { ok: false, reason: 'missing_header' };
      const stale = timestampOk(ts, nowMs, windowS);
      if (stale) return stale;
      const want = `v0=${hmacHex(secret, Buffer.concat([Buffer.from(`v0:${ts}:`), body]))}`;
      return equal(sig, want) ? { ok: true } : { ok: false, reason: 'bad_signature' };
    }
    case 'hmac_sha256': {
      const ts = h('x-tyrum-timestamp');
      const sig = h('x-tyrum-signature');
      if (sig === undefined) return { ok: false, reason: 'missing_header' };
      const stale = timestampOk(ts, nowMs, windowS);
      if (stale) return stale;
      const want = `sha256=${hmacHex(secret, Buffer.concat([Buffer.from(`${ts}.`), body]))}`;
      return equal(sig, want) ? { ok: true } : { ok: false, reason: 'bad_signature' };
    }
  }
}

/** The headers of a hmac_sha256-signed request (the generic webhook, both ways). */
export function signHmac(secret: Buffer | string, body: Buffer | string, nowMs: number): { 'x-tyrum-timestamp': string; 'x-tyrum-signature': string } {
  const ts = String(Math.floor(nowMs / 1000));
  return { 'x-tyrum-timestamp': ts, 'x-tyrum-signature': `sha256=${hmacHex(secret, Buffer.concat([Buffer.from(`${ts}.`), Buffer.from(body)]))}` };
}

/** The headers Slack would send (tests, `tyrum plugin test` replays). */
export function signSlack(secret: Buffer | string, body: Buffer | string, nowMs: number): { 'x-slack-request-timestamp': string; 'x-slack-signature': string } {
  const ts = String(Math.floor(nowMs / 1000));
  return { 'x-slack-request-timestamp': ts, 'x-slack-signature': `v0=${hmacHex(secret, Buffer.concat([Buffer.from(`v0:${ts}:`), Buffer.from(body)]))}` };
}
