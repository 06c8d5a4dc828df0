/**
 * The channel-adapter ABI (docs/channels.md): what a channel plugin's two exports take and give,
 * and the host's checks on what they give. Pure: no I/O, so the gateway (core/channels) and the
 * author's offline harness (`tyrum plugin test`) apply exactly the same rules.
 *
 * - inbound export: `{ headers, body, instance }` (JSON) → `{ messages[], respond? }` (JSON). Called
 *   only after the host verified the webhook; `headers` holds only the headers the manifest lists.
 * - outbound export: `{ text, chat_id, thread_id, text_limit }` → `{ requests[] }`. Each request is
 *   `{ method, path, headers?, body }`; the host sends it to the instance's API base, so a plugin
 *   names a path, never an origin; the body must carry the conversation's chat (and thread) at the
 *   manifest's destination pointers, and `{{credential}}` (in the path or a header value) is where
 *   the host puts the bot credential. Anything else is refused: TYRUM_ERR_CHANNEL_DESTINATION for
 *   another destination, TYRUM_ERR_CHANNEL_ADAPTER for a malformed answer.
 */
import type { ChannelContribution } from '../../schemas/index.js';
import { TyrumError } from '../errors/index.js';

/** The placeholder an adapter writes where the host injects the bot credential. */
export const CREDENTIAL_PLACEHOLDER = '{{credential}}';
/** Limits on what an adapter may return. */
export const CHANNEL_LIMITS = {
  /** Messages one webhook may carry. */
  maxInboundMessages: 100,
  /** Characters of one inbound message's text (longer text is cut, marked). */
  maxInboundTextChars: 32_768,
  /** Requests one reply may take (a long reply split in parts). */
  maxOutboundRequests: 16,
  /** Bytes of one outbound request body, JSON. */
  maxOutboundBodyBytes: 256 * 1024,
  /** Length of an id (external message id, sender id, chat id, thread id). */
  maxIdChars: 256,
} as const;

export interface InboundRequest {
  headers: Record<string, string>;
  /** The raw body, as text. */
  body: string;
  /** The instance name (an adapter serving several bots may branch on it). */
  instance: string;
}

/** One normalised inbound message. */
export interface InboundMessage {
  /** The platform's id of this message/update: the dedupe key (same channel instance, same id = one turn). */
  external_id: string;
  sender: { id: string; name: string | null };
  chat: { id: string; kind: 'direct' | 'group' };
  /** Thread inside the chat (Slack thread_ts, Telegram forum topic), or null. */
  thread_id: string | null;
  text: string;
}

export interface InboundResult {
  messages: InboundMessage[];
  /** What the host answers the platform (e.g. Slack's url_verification challenge); default 200 `{ok:true}`. */
  respond: { status: number; body: unknown } | null;
}

export interface OutboundInput {
  text: string;
  chat_id: string;
  thread_id: string | null;
  text_limit: number;
}

export interface OutboundRequest {
  method: 'POST' | 'PUT' | 'PATCH';
  /** Path (and query) under the instance's API base; may hold {{credential}}. '' for the base itself. */
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

const ID_RE = /^[\x21-\x7e]{1,256}$/;

function adapterError(message: string, details?: Record<string, unknown>): TyrumError {
  return new TyrumError('TYRUM_ERR_CHANNEL_ADAPTER', message, details);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function id(v: unknown, what: string): string {
  const s = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : v;
  if (typeof s !== 'string' || !ID_RE.test(s)) throw adapterError(`${what} must be a non-empty printable string of at most ${CHANNEL_LIMITS.maxIdChars} characters`);
  return s;
}

/** Checks and normalises the inbound export's answer. */
export function checkInboundResult(raw: unknown): InboundResult {
  if (!isObject(raw)) throw adapterError('the inbound export must return a JSON object {messages, respond?}');
  const list = raw.messages ?? [];
  if (!Array.isArray(list)) throw adapterError('messages must be an array');
  if (list.length > CHANNEL_LIMITS.maxInboundMessages) throw adapterError(`at most ${CHANNEL_LIMITS.maxInboundMessages} messages per webhook`);
  const messages = list.map((m, i): InboundMessage => {
    if (!isObject(m)) throw adapterError(`messages[${i}] must be an object`);
    const sender = m.sender;
    const chat = m.chat;
    if (!isObject(sender) || !isObject(chat)) throw adapterError(`messages[${i}] needs sender {id} and chat {id, kind}`);
    if (chat.kind !== 'direct' && chat.kind !== 'group') throw adapterError(`messages[${i}].chat.kind must be "direct" or "group"`);
    if (typeof m.text !== 'string') throw adapterError(`messages[${i}].text must be a string`);
    const text = m.text.length > CHANNEL_LIMITS.maxInboundTextChars ? `${m.text.slice(0, CHANNEL_LIMITS.maxInboundTextChars)} [cut: the message was longer]` : m.text;
    const name = sender.name;
    return {
      external_id: id(m.external_id, `messages[${i}].external_id`),
      sender: { id: id(sender.id, `messages[${i}].sender.id`), name: typeof name === 'string' && name !== '' ? name.slice(0, 200) : null },
      chat: { id: id(chat.id, `messages[${i}].chat.id`), kind: chat.kind },
      thread_id: m.thread_id === undefined || m.thread_id === null ? null : id(m.thread_id, `messages[${i}].thread_id`),
      text,
    };
  });
  let respond: InboundResult['respond'] = null;
  if (raw.respond !== undefined && raw.respond !== null) {
    if (!isObject(raw.respond)) throw adapterError('respond must be an object {status?, body}');
    const status = raw.respond.status ?? 200;
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 299) throw adapterError('respond.status must be a 2xx status');
    respond = { status, body: raw.respond.body ?? null };
  }
  return { messages, respond };
}

/** RFC 6901: the value at `pointer` in `doc`, or undefined. */
export function atPointer(doc: unknown, pointer: string): unknown {
  if (pointer === '') return doc;
  let cur: unknown = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^(0|[1-9][0-9]*)$/.test(key)) cur = cur[Number(key)];
    else if (isObject(cur) && Object.prototype.hasOwnProperty.call(cur, key)) cur = cur[key];
    else return undefined;
  }
  return cur;
}

function sameId(v: unknown, want: string): boolean {
  return (typeof v === 'string' && v === want) || (typeof v === 'number' && Number.isSafeInteger(v) && String(v) === want);
}

const HEADER_NAME_RE = /^[A-Za-z0-9-]{1,64}$/;
/** Headers the host sets itself; an adapter may not. */
const HOST_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'x-tyrum-signature', 'x-tyrum-timestamp', 'cookie']);

/**
 * Checks the outbound export's answer against the channel's rules and this reply's destination:
 * each request's body carries exactly the conversation's chat (and thread, or none) at the
 * manifest's pointers; paths stay under the API base; {{credential}} only in the path or a header
 * value. Returns the requests to send, in order.
 */
export function checkOutboundResult(channel: ChannelContribution, input: OutboundInput, raw: unknown): OutboundRequest[] {
  if (!isObject(raw) || !Array.isArray(raw.requests)) throw adapterError('the outbound export must return a JSON object {requests: [...]}');
  if (raw.requests.length === 0) throw adapterError('the outbound export returned no request');
  if (raw.requests.length > CHANNEL_LIMITS.maxOutboundRequests) throw adapterError(`at most ${CHANNEL_LIMITS.maxOutboundRequests} requests per reply`);
  return raw.requests.map((r, i): OutboundRequest => {
    if (!isObject(r)) throw adapterError(`requests[${i}] must be an object`);
    const method = r.method ?? 'POST';
    if (method !== 'POST' && method !== 'PUT' && method !== 'PATCH') throw adapterError(`requests[${i}].method must be POST, PUT or PATCH`);
    const path = r.path ?? '';
    // Only the paths the manifest lists, exactly: no query string (Telegram and Slack read
    // parameters from the query too, where the destination check cannot see them, and where a
    // {{credential}} would be posted as content), no other API method (setWebhook...).
    if (typeof path !== 'string' || !channel.outbound.paths.includes(path)) {
      throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `requests[${i}].path ${JSON.stringify(String(path).slice(0, 100))} is not one of the channel's outbound paths (manifest outbound.paths)`, { index: i });
    }
    const headers: Record<string, string> = {};
    if (r.headers !== undefined) {
      if (!isObject(r.headers)) throw adapterError(`requests[${i}].headers must be an object of strings`);
      for (const [k, v] of Object.entries(r.headers)) {
        if (!HEADER_NAME_RE.test(k) || typeof v !== 'string' || /[\r\n]/.test(v) || v.length > 4096) throw adapterError(`requests[${i}].headers.${k.slice(0, 64)} is not a valid header`);
        const name = k.toLowerCase();
        if (HOST_HEADERS.has(name)) throw adapterError(`requests[${i}].headers: ${k} is set by the host`);
        // The body is JSON, sent as JSON: a form or text content type would let the platform read
        // other fields (another chat) out of the bytes the host checked as JSON.
        if (name === 'content-type' && !/^application\/json\s*(;\s*charset=utf-8\s*)?$/i.test(v)) throw adapterError(`requests[${i}].headers.content-type must be application/json (the host sends the body as JSON)`);
        if (v.split(CREDENTIAL_PLACEHOLDER).join('').includes('{{')) throw adapterError(`requests[${i}].headers.${k} has a template other than ${CREDENTIAL_PLACEHOLDER}`);
        // The credential goes only into the Authorization header (or a listed path): never into a
        // header a platform might echo or log as content.
        if (v.includes(CREDENTIAL_PLACEHOLDER) && name !== 'authorization') throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `requests[${i}].headers.${k}: ${CREDENTIAL_PLACEHOLDER} may only go into the Authorization header`, { index: i });
        headers[name] = v;
      }
    }
    if (!isObject(r.body)) throw adapterError(`requests[${i}].body must be a JSON object`);
    const body = r.body;
    const text = JSON.stringify(body);
    if (Buffer.byteLength(text) > CHANNEL_LIMITS.maxOutboundBodyBytes) throw adapterError(`requests[${i}].body is larger than ${CHANNEL_LIMITS.maxOutboundBodyBytes} bytes`);
    if (text.includes(CREDENTIAL_PLACEHOLDER)) throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `requests[${i}].body may not hold ${CREDENTIAL_PLACEHOLDER}: the credential goes only into the path or a header`, { index: i });
    const chat = atPointer(body, channel.outbound.destination.chat);
    if (!sameId(chat, input.chat_id)) {
      throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `requests[${i}] is addressed to another chat than the conversation's (at ${channel.outbound.destination.chat})`, { index: i, pointer: channel.outbound.destination.chat });
    }
    const threadPtr = channel.outbound.destination.thread;
    if (threadPtr !== undefined) {
      const thread = atPointer(body, threadPtr);
      const ok = input.thread_id === null ? thread === undefined || thread === null : sameId(thread, input.thread_id);
      if (!ok) throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `requests[${i}] is addressed to another thread than the conversation's (at ${threadPtr})`, { index: i, pointer: threadPtr });
    }
    return { method, path, headers, body };
  });
}

/**
 * The URL a request goes to: the API base (origin plus an optional path prefix) and the adapter's
 * path, with the credential in place. The origin is always the base's; throws otherwise.
 */
export function outboundUrl(apiBase: string, path: string, credential: string | null): URL {
  const base = new URL(apiBase);
  const prefix = base.pathname.replace(/\/+$/, '');
  // Defence in depth (checkOutboundResult already allows only the manifest's paths): never a query
  // or fragment, where a credential would become a parameter the platform reads as content.
  if (/[?#]/.test(path)) throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', 'an outbound path may not carry a query string or fragment');
  let p = path;
  if (p.includes(CREDENTIAL_PLACEHOLDER)) {
    if (credential === null) throw new TyrumError('TYRUM_ERR_CHANNEL_ADAPTER', `the request path uses ${CREDENTIAL_PLACEHOLDER} but the instance has no credential`);
    // Tokens such as Telegram's (123456:ABC-...) go in as they are; anything else is percent-encoded.
    p = p.split(CREDENTIAL_PLACEHOLDER).join(/^[A-Za-z0-9:_.~-]+$/.test(credential) ? credential : encodeURIComponent(credential));
  }
  const url = new URL(`${base.origin}${prefix}${p}`);
  if (url.origin !== base.origin) throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', 'an outbound request left the API base origin');
  return url;
}

/** Header values with the credential in place. */
export function outboundHeaders(headers: Record<string, string>, credential: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v.includes(CREDENTIAL_PLACEHOLDER)) {
      if (credential === null) throw new TyrumError('TYRUM_ERR_CHANNEL_ADAPTER', `header ${k} uses ${CREDENTIAL_PLACEHOLDER} but the instance has no credential`);
      out[k] = v.split(CREDENTIAL_PLACEHOLDER).join(credential);
    } else out[k] = v;
  }
  return out;
}
