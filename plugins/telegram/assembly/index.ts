// telegram: the Telegram Bot API as a Tyrum chat channel (AssemblyScript, Extism ABI).
//
// Two pure translators (docs/channels.md): `inbound` turns one webhook Update into conversation
// messages, `outbound` turns a reply into sendMessage requests. The gateway verified the webhook
// (X-Telegram-Bot-Api-Secret-Token) before `inbound` runs, and puts the bot token where the path
// says {{credential}}: this module never sees a secret, and imports only the Extism kernel.
import { fail, outputJson } from "../../_shared/assembly/io";
import { JsonObject, JsonValue, JsonWriter } from "../../_shared/assembly/json";
import {
  channelError,
  id,
  isIntegerText,
  isTrue,
  member,
  MessagesWriter,
  obj,
  parseBody,
  readInboundInput,
  readOutboundInput,
  splitText,
  str,
} from "../../_shared/assembly/channel";

/**
 * {headers, body, instance} -> {messages}. A `message` with `text` from a person is one message;
 * everything else (edits, channel posts, callbacks, photos without text, bots) is none.
 */
export function inbound(): i32 {
  __collect();
  const input = readInboundInput();
  if (input === null) return fail(channelError);
  const body = parseBody(input.body);
  if (body === null) return fail(channelError);
  const out = new MessagesWriter();
  readUpdate(body, out);
  return outputJson(out.finish());
}

function readUpdate(body: JsonValue, out: MessagesWriter): void {
  const update = obj(body);
  const updateId = id(member(update, "update_id"));
  if (updateId === null) return;
  const message = obj(member(update, "message"));
  if (message === null) return;
  const text = str(member(message, "text"));
  if (text === null) return;
  const from = obj(member(message, "from"));
  if (from === null || isTrue(member(from, "is_bot"))) return;
  const senderId = id(member(from, "id"));
  const chat = obj(member(message, "chat"));
  const chatId = id(member(chat, "id"));
  if (senderId === null || chatId === null) return;
  const chatType = str(member(chat, "type"));
  const direct = chatType !== null && chatType == "private";
  // A forum topic. Replies in an ordinary supergroup carry a message_thread_id too (the replied-to
  // message), but sendMessage takes one only in forums: those are marked by is_topic_message (and
  // the chat's is_forum); the General topic has no thread id at all.
  let threadId: string | null = null;
  if (isTrue(member(message, "is_topic_message")) || isTrue(member(chat, "is_forum"))) threadId = id(member(message, "message_thread_id"));
  out.add(updateId, senderId, senderName(from), chatId, direct, threadId, text);
}

/** "First Last", else the first name, else "@username"; null when there is none. */
function senderName(from: JsonObject): string | null {
  const first = str(member(from, "first_name"));
  const last = str(member(from, "last_name"));
  let name = "";
  if (first !== null) name = first;
  if (last !== null && last.length > 0) name = name.length > 0 ? name + " " + last : last;
  if (name.length > 0) return name;
  const username = str(member(from, "username"));
  return username !== null && username.length > 0 ? "@" + username : null;
}

/**
 * {text, chat_id, thread_id, text_limit} -> {requests}: one sendMessage per part of the text (at
 * most text_limit UTF-16 units each, Telegram's own measure; split at paragraph, line or word
 * boundaries when possible). Plain text: no parse_mode, so nothing in the reply is markup.
 */
export function outbound(): i32 {
  __collect();
  const input = readOutboundInput();
  if (input === null) return fail(channelError);
  const parts = splitText(input.text, input.textLimit);
  const w = new JsonWriter(input.text.length + 256 * parts.length);
  w.raw('{"requests":[');
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) w.byte(0x2c);
    w.raw('{"method":"POST","path":"/bot{{credential}}/sendMessage","headers":{"content-type":"application/json"},"body":{"chat_id":');
    w.string(input.chatId); // as received: Telegram takes the id as a string (and @channel names)
    w.raw(',"text":').string(parts[i]);
    const thread = input.threadId;
    if (thread !== null) {
      // message_thread_id is an Integer in the Bot API: a number when the id is one.
      w.raw(',"message_thread_id":');
      if (isIntegerText(thread) && thread.length <= 15) w.raw(thread);
      else w.string(thread);
    }
    w.raw("}}");
  }
  w.raw("]}");
  return outputJson(w);
}
