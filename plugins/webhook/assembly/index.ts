// webhook: a generic signed-webhook chat channel for Tyrum (AssemblyScript, Extism ABI).
//
// Two pure translators (docs/channels.md): `inbound` reads messages posted as simple JSON,
// `outbound` writes a reply as simple JSON to the instance's URL. The gateway checks the
// X-Tyrum-Signature (HMAC-SHA256 over "<timestamp>.<body>") before `inbound` runs and signs each
// outbound request the same way: this module never sees a secret, and imports only the Extism kernel.
import { fail, outputJson } from "../../_shared/assembly/io";
import { JsonArray, JsonKind, JsonObject, JsonValue, JsonWriter } from "../../_shared/assembly/json";
import {
  channelError,
  id,
  member,
  MessagesWriter,
  obj,
  parseBody,
  readInboundInput,
  readOutboundInput,
  splitText,
  str,
} from "../../_shared/assembly/channel";

/** Messages one webhook may carry (CHANNEL_LIMITS.maxInboundMessages). */
const MAX_MESSAGES: i32 = 100;

/**
 * {headers, body, instance} -> {messages, respond?}. The body is one message
 * `{id, sender: {id, name?}, chat: {id, kind?}, thread_id?, text}` or `{messages: [...]}` of them.
 * A message that does not have that shape is left out, and the answer to the sender says which and
 * why: `{ok: true, messages: <n taken>, ignored: [{index, reason}]}` (the plain `{ok: true}` when
 * none was left out). Only a body that is not JSON fails.
 */
export function inbound(): i32 {
  __collect();
  const input = readInboundInput();
  if (input === null) return fail(channelError);
  const body = parseBody(input.body);
  if (body === null) return fail(channelError);
  const out = new MessagesWriter();
  const ignored = new JsonWriter(64);
  let nIgnored = 0;
  const root = obj(body);
  const list = member(root, "messages");
  if (root === null) {
    nIgnored = ignore(ignored, nIgnored, 0, "the body must be a JSON object: one message or {messages: [...]}");
  } else if (list !== null) {
    if (list.kind !== JsonKind.Array) {
      nIgnored = ignore(ignored, nIgnored, 0, '"messages" must be an array');
    } else {
      const items = changetype<JsonArray>(list).items;
      for (let i = 0; i < items.length; i++) {
        if (out.count >= MAX_MESSAGES) {
          nIgnored = ignore(ignored, nIgnored, i, "more than " + MAX_MESSAGES.toString() + " messages in one webhook");
          continue;
        }
        const why = readMessage(items[i], out);
        if (why !== null) nIgnored = ignore(ignored, nIgnored, i, why);
      }
    }
  } else {
    const why = readMessage(body, out);
    if (why !== null) nIgnored = ignore(ignored, nIgnored, 0, why);
  }
  if (nIgnored === 0) return outputJson(out.finish());
  const respond = new JsonWriter(128);
  respond.raw('{"ok":true,"messages":').int(out.count).raw(',"ignored":[').bytes(ignored.buf, 0, ignored.len).raw("]}");
  return outputJson(out.finish(respond));
}

function ignore(w: JsonWriter, n: i32, index: i32, reason: string): i32 {
  if (n > 0) w.byte(0x2c);
  w.raw('{"index":').int(index).raw(',"reason":').string(reason).raw("}");
  return n + 1;
}

const ID_RULE = " must be a string (or integer) of 1 to 256 printable ASCII characters without spaces";

/** Adds the message `v` to `out`; or returns why it cannot. */
function readMessage(v: JsonValue, out: MessagesWriter): string | null {
  const m = obj(v);
  if (m === null) return "a message must be an object";
  const externalId = id(member(m, "id"));
  if (externalId === null) return '"id"' + ID_RULE;
  const sender = obj(member(m, "sender"));
  const senderId = id(member(sender, "id"));
  if (senderId === null) return '"sender.id"' + ID_RULE;
  const chat = obj(member(m, "chat"));
  const chatId = id(member(chat, "id"));
  if (chatId === null) return '"chat.id"' + ID_RULE;
  const kindValue = member(chat, "kind");
  let direct = true;
  if (kindValue !== null && kindValue.kind !== JsonKind.Null) {
    const kind = str(kindValue);
    if (kind === null || (kind != "direct" && kind != "group")) return '"chat.kind" must be "direct" or "group"';
    direct = kind == "direct";
  }
  const threadValue = member(m, "thread_id");
  let thread: string | null = null;
  if (threadValue !== null && threadValue.kind !== JsonKind.Null) {
    thread = id(threadValue);
    if (thread === null) return '"thread_id"' + ID_RULE + ", or null";
  }
  const text = str(member(m, "text"));
  if (text === null) return '"text" must be a string';
  const nameValue = member(sender as JsonObject, "name");
  out.add(externalId, senderId, str(nameValue), chatId, direct, thread, text);
  return null;
}

/**
 * {text, chat_id, thread_id, text_limit} -> {requests}: one POST of `{chat_id, thread_id, text}`
 * (thread_id null outside a thread) to the instance's URL itself (path ""). A text longer than
 * text_limit (100,000 in the manifest) is sent in parts, one request each.
 */
export function outbound(): i32 {
  __collect();
  const input = readOutboundInput();
  if (input === null) return fail(channelError);
  const parts = splitText(input.text, input.textLimit);
  const w = new JsonWriter(input.text.length + 192 * parts.length);
  w.raw('{"requests":[');
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) w.byte(0x2c);
    w.raw('{"method":"POST","path":"","headers":{"content-type":"application/json"},"body":{"chat_id":').string(input.chatId);
    w.raw(',"thread_id":');
    const thread = input.threadId;
    if (thread === null) w.nullValue();
    else w.string(thread);
    w.raw(',"text":').string(parts[i]).raw("}}");
  }
  w.raw("]}");
  return outputJson(w);
}
