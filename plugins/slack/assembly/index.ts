// slack: the Slack Events API and Web API as a Tyrum chat channel (AssemblyScript, Extism ABI).
//
// Two pure translators (docs/channels.md): `inbound` turns one Events API request into conversation
// messages (or the answer to Slack's URL verification), `outbound` turns a reply into
// chat.postMessage requests. The gateway checked the v0 signature before `inbound` runs, and puts
// the bot token where a header says {{credential}}: this module never sees a secret, and imports
// only the Extism kernel.
import { fail, outputJson } from "../../_shared/assembly/io";
import { JsonObject, JsonWriter } from "../../_shared/assembly/json";
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

/**
 * {headers, body, instance} -> {messages, respond?}.
 * - url_verification: no message; the host answers {challenge}.
 * - event_callback with a `message` (no subtype, no bot_id: a person's new message) or an
 *   `app_mention`: one message. external_id is "<channel>:<ts>" (the message, whichever event carried it).
 * - anything else: no message.
 */
export function inbound(): i32 {
  __collect();
  const input = readInboundInput();
  if (input === null) return fail(channelError);
  const body = parseBody(input.body);
  if (body === null) return fail(channelError);
  const out = new MessagesWriter();
  const envelope = obj(body);
  const type = str(member(envelope, "type"));
  if (type !== null && type == "url_verification") {
    const challenge = str(member(envelope, "challenge"));
    const r = new JsonWriter(64);
    r.raw('{"challenge":').string(challenge === null ? "" : challenge).raw("}");
    return outputJson(out.finish(r));
  }
  if (type !== null && type == "event_callback") readEvent(changetype<JsonObject>(envelope), out);
  return outputJson(out.finish());
}

function readEvent(envelope: JsonObject, out: MessagesWriter): void {
  const eventId = id(member(envelope, "event_id"));
  const event = obj(member(envelope, "event"));
  if (eventId === null || event === null) return;
  const type = str(member(event, "type"));
  if (type === null) return;
  if (type == "message") {
    // Edits, deletions, joins, bot posts, file shares... all have a subtype; bots' posts a bot_id.
    if (member(event, "subtype") !== null || member(event, "bot_id") !== null) return;
  } else if (type == "app_mention") {
    if (member(event, "bot_id") !== null) return;
  } else {
    return;
  }
  const text = str(member(event, "text"));
  const user = id(member(event, "user"));
  const channel = id(member(event, "channel"));
  if (text === null || user === null || channel === null) return;
  // app_mention events carry no channel_type; a DM's channel id starts with "D".
  const channelType = str(member(event, "channel_type"));
  const direct = channelType !== null ? channelType == "im" : channel.charCodeAt(0) === 0x44;
  let thread = id(member(event, "thread_ts"));
  // A top-level message in a channel: the reply starts a thread under it. In a DM, reply inline.
  if (thread === null && !direct) thread = id(member(event, "ts"));
  // The dedupe key is the message itself (channel and ts), not the event: Slack's retries repeat
  // both, and a mention delivered twice (as `message` and as `app_mention`, two event ids) is one
  // message, so one turn. The event id is the fallback for an event without a ts.
  const ts = id(member(event, "ts"));
  out.add(ts !== null ? channel + ":" + ts : eventId, user, senderName(event), channel, direct, thread, unescape(text));
}

/** The poster's name when Slack includes a profile (message events often do), else null. */
function senderName(event: JsonObject): string | null {
  const profile = obj(member(event, "user_profile"));
  if (profile === null) return null;
  const display = str(member(profile, "display_name"));
  if (display !== null && display.length > 0) return display;
  const real = str(member(profile, "real_name"));
  return real !== null && real.length > 0 ? real : null;
}

/**
 * Slack escapes &, < and > in message text (its markup uses <...>); the person typed the plain
 * characters. Mentions and links (<@U123>, <https://...|label>) stay as Slack wrote them.
 */
function unescape(s: string): string {
  if (s.indexOf("&") < 0) return s;
  return s.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
}

/** The reverse for a reply: plain text, so &, < and > must not start Slack markup. */
function escape(s: string): string {
  if (s.indexOf("&") < 0 && s.indexOf("<") < 0 && s.indexOf(">") < 0) return s;
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/**
 * {text, chat_id, thread_id, text_limit} -> {requests}: one chat.postMessage per part of the text
 * (at most text_limit UTF-16 units before escaping; split at paragraph, line or word boundaries
 * when possible), in the conversation's thread when it has one.
 */
export function outbound(): i32 {
  __collect();
  const input = readOutboundInput();
  if (input === null) return fail(channelError);
  const parts = splitText(input.text, input.textLimit);
  const w = new JsonWriter(input.text.length + 320 * parts.length);
  w.raw('{"requests":[');
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) w.byte(0x2c);
    w.raw('{"method":"POST","path":"/chat.postMessage","headers":{"authorization":"Bearer {{credential}}","content-type":"application/json; charset=utf-8"},');
    w.raw('"body":{"channel":').string(input.chatId);
    w.raw(',"text":').string(escape(parts[i]));
    const thread = input.threadId;
    if (thread !== null) w.raw(',"thread_ts":').string(thread);
    w.raw("}}");
  }
  w.raw("]}");
  return outputJson(w);
}
