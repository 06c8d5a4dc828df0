#!/usr/bin/env node
// Local stand-ins for the two cloud APIs a Telegram bot talks to, so the whole agent loop runs on
// one machine with no network and no model. Plain ESM JavaScript, Node's standard library only.
//
//   node fake-cloud.mjs [serve] [--telegram-port 18081] [--model-port 18082] [--bot-token T]
//       Starts, on 127.0.0.1:
//       - a Telegram Bot API stand-in: POST /bot<token>/sendMessage answers like Telegram
//         ({ok: true, result: {message_id, chat, date, text, ...}}) and prints each message it
//         "delivers" as `[telegram → chat 42] text`. With --bot-token, another token gets
//         Telegram's 401. GET /_fake/sent lists what was delivered (the `sent` mode reads it).
//       - a scripted Chat Completions stand-in: POST /v1/chat/completions answers like OpenAI
//         (SSE when the request asks to stream, JSON otherwise). Deterministic script, by the last
//         message: a user message asking to note something ("note: ...", "remember ...") gets a
//         tool call to notes__add_note {title, body}; a tool result gets a short confirmation
//         quoting it; anything else gets a short friendly answer.
//       Ports also from FAKE_TELEGRAM_PORT / FAKE_MODEL_PORT (0 picks free ports); the URLs are
//       printed at start. Stops on SIGINT / SIGTERM.
//
//   node fake-cloud.mjs send --gateway URL --secret-file F --chat ID --text TEXT
//                            [--from ID] [--name NAME] [--instance bot] [--update-id N] [--state F]
//   node fake-cloud.mjs send --gateway URL --secret-file F --resend
//       Posts a Telegram Update to the gateway's webhook (/channels/telegram/<instance>/webhook)
//       with the X-Telegram-Bot-Api-Secret-Token header, as Telegram does, and prints the HTTP
//       status. update_id grows by one per send (kept in --state, by default
//       fake-telegram-state.json next to the secret file) unless --update-id is given. --resend
//       posts the last update again, byte for byte, as Telegram does when it retries.
//
//   node fake-cloud.mjs sent [--telegram URL] [--chat ID] [--wait N] [--timeout-ms MS]
//       Prints the messages the fake Telegram delivered (to one chat), after waiting until there
//       are at least N of them (exit 1 if that takes longer than the timeout, default 20 s).
import { createServer, request as httpRequest } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Buffer } from 'node:buffer';

const HOST = '127.0.0.1';

function fail(message) {
  console.error(`fake-cloud: ${message}`);
  process.exit(2);
}

function args(argv, options) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values;
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A small HTTP client (node:http), so the script needs no globals beyond Node's modules. */
function call(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      readBody(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// --- the Telegram Bot API stand-in ---------------------------------------------------------------

function telegramServer(botToken) {
  const sent = [];
  let nextMessageId = 501;
  const error = (res, code, description) => sendJson(res, code, { ok: false, error_code: code, description });
  return {
    sent,
    server: createServer((req, res) => {
      readBody(req).then((raw) => {
        const path = (req.url ?? '/').split('?')[0];
        if (req.method === 'GET' && path === '/_fake/sent') return sendJson(res, 200, { sent });
        const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(path);
        if (m === null || (req.method !== 'POST' && req.method !== 'GET')) return error(res, 404, 'Not Found');
        if (botToken !== undefined && decodeURIComponent(m[1]) !== botToken) return error(res, 401, 'Unauthorized');
        if (m[2] === 'getMe') return sendJson(res, 200, { ok: true, result: { id: 7000000001, is_bot: true, first_name: 'Tyrum', username: 'tyrum_local_bot' } });
        if (m[2] !== 'sendMessage') return error(res, 404, 'Not Found: method not found');
        const body = parseJson(raw);
        if (typeof body !== 'object' || body === null) return error(res, 400, 'Bad Request: message text is empty');
        const chatId = body.chat_id;
        if (typeof chatId !== 'string' && typeof chatId !== 'number') return error(res, 400, 'Bad Request: chat_id is empty');
        if (typeof body.text !== 'string' || body.text.trim() === '') return error(res, 400, 'Bad Request: message text is empty');
        if (body.text.length > 4096) return error(res, 400, 'Bad Request: message is too long');
        const thread = body.message_thread_id;
        const chat = /^-?[0-9]+$/.test(String(chatId)) ? Number(chatId) : chatId;
        const message = {
          message_id: nextMessageId++,
          ...(thread === undefined ? {} : { message_thread_id: Number(thread), is_topic_message: true }),
          from: { id: 7000000001, is_bot: true, first_name: 'Tyrum', username: 'tyrum_local_bot' },
          chat: { id: chat, type: typeof chat === 'number' && chat < 0 ? 'supergroup' : 'private' },
          date: Math.floor(Date.now() / 1000),
          text: body.text,
        };
        sent.push({ message_id: message.message_id, chat_id: String(chatId), ...(thread === undefined ? {} : { thread_id: Number(thread) }), text: body.text });
        console.log(`[telegram → chat ${chatId}${thread === undefined ? '' : ` thread ${thread}`}] ${body.text}`);
        sendJson(res, 200, { ok: true, result: message });
      }, () => res.destroy());
    }),
  };
}

// --- the Chat Completions stand-in ----------------------------------------------------------------

const NOTE_TOOL = 'notes__add_note'; // notes.add_note, as the gateway names it for the API

/**
 * The text of a user message. A channel message arrives as the gateway's JSON envelope
 * ({channel, chat, sender, webhook_verified, text}); an operator's message as plain text.
 */
function userText(content) {
  const text = typeof content === 'string' ? content : Array.isArray(content) ? content.map((p) => p?.text ?? '').join('') : '';
  const envelope = text.startsWith('{') ? parseJson(text) : null;
  return envelope !== null && typeof envelope === 'object' && typeof envelope.text === 'string' ? envelope.text : text;
}

/** What the note is about: the words after "note"/"remember", e.g. "note: buy milk" → "buy milk". */
function noteRequest(text) {
  const m = /\b(?:note|remember)\b[\s:,-]*(?:(?:that|to)\s+)?([\s\S]*)$/i.exec(text);
  return m === null ? null : m[1].trim();
}

/** The scripted model: the next assistant message for this request. */
function reply(body) {
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  const last = messages.at(-1);
  const offered = (Array.isArray(body?.tools) ? body.tools : []).some((t) => t?.function?.name === NOTE_TOOL);
  if (last?.role === 'tool') {
    const result = parseJson(typeof last.content === 'string' ? last.content : '');
    if (result?.ok === true && result.output?.title !== undefined) return { content: `Done: I saved the note "${result.output.title}" (${result.output.id}).` };
    if (result?.ok === false) return { content: `I could not save the note: ${result.error?.message ?? 'the tool failed'} (${result.error?.code ?? 'no code'}).` };
    return { content: `The tool answered: ${String(last.content).slice(0, 300)}` };
  }
  const text = last?.role === 'user' ? userText(last.content) : '';
  const subject = noteRequest(text);
  if (subject !== null && subject !== '') {
    if (!offered) return { content: `I would note "${subject}", but I was not offered the notes tool (is the notes plugin enabled?).` };
    const firstLine = subject.split('\n')[0].trim();
    const title = (firstLine.charAt(0).toUpperCase() + firstLine.slice(1)).slice(0, 80);
    return { tool_calls: [{ name: NOTE_TOOL, arguments: JSON.stringify({ title, body: subject }) }] };
  }
  if (subject === '') return { content: 'Sure. What should I note? Write, for example, "note: buy milk".' };
  return { content: 'Hello! I am a scripted stand-in for a model. Write "note: something" and I will save it with the notes tool.' };
}

function modelServer() {
  let requests = 0;
  const server = createServer((req, res) => {
    readBody(req).then((raw) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [{ id: 'fake', object: 'model', owned_by: 'fake-cloud' }] });
      if (req.method !== 'POST' || path !== '/v1/chat/completions') return sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error', code: null } });
      const body = parseJson(raw);
      if (typeof body !== 'object' || body === null || !Array.isArray(body.messages)) return sendJson(res, 400, { error: { message: 'messages: an array is required', type: 'invalid_request_error', code: null } });
      requests++;
      const out = reply(body);
      const model = typeof body.model === 'string' ? body.model : 'fake';
      const id = `chatcmpl-fake-${requests}`;
      const created = Math.floor(Date.now() / 1000);
      const calls = (out.tool_calls ?? []).map((c, n) => ({ id: `call_fake_${requests}_${n}`, type: 'function', function: c }));
      const finish = calls.length > 0 ? 'tool_calls' : 'stop';
      const completion = Math.ceil(((out.content ?? '') + calls.map((c) => c.function.name + c.function.arguments).join('')).length / 4);
      const prompt = Math.ceil(JSON.stringify(body.messages).length / 4);
      const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
      console.log(calls.length > 0 ? `[model] tool call ${calls.map((c) => `${c.function.name} ${c.function.arguments}`).join(', ')}` : `[model] answer: ${out.content}`);

      if (body.stream !== true) {
        const message = { role: 'assistant', content: out.content ?? null, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
        return sendJson(res, 200, { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage });
      }
      // Streamed as OpenAI does: a role chunk, the text in pieces, each tool call (id and name
      // first, then its arguments in fragments, keyed by index), the finish reason, the usage
      // chunk when asked for, then [DONE].
      const withUsage = body.stream_options?.include_usage === true;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (delta, finishReason = null) => {
        const data = { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], ...(withUsage ? { usage: null } : {}) };
        res.write(`data: ${JSON.stringify(data)}\n\n`);
      };
      chunk({ role: 'assistant', content: '' });
      for (const piece of (out.content ?? '').match(/\S*\s*/g)?.filter((p) => p !== '') ?? []) chunk({ content: piece });
      for (const [index, c] of calls.entries()) {
        chunk({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] });
        for (let i = 0; i < c.function.arguments.length; i += 16) chunk({ tool_calls: [{ index, function: { arguments: c.function.arguments.slice(i, i + 16) } }] });
      }
      chunk({}, finish);
      if (withUsage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
    }, () => res.destroy());
  });
  return { server };
}

function listen(server, port, what) {
  return new Promise((resolve) => {
    server.once('error', (e) => fail(`cannot listen on ${HOST}:${port} for the ${what}: ${e.message} (choose another port with --${what === 'fake Telegram' ? 'telegram' : 'model'}-port)`));
    server.listen(port, HOST, () => resolve(server.address().port));
  });
}

function port(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${name}: a port number is required, got ${JSON.stringify(value)}`);
  return n;
}

async function serve(argv) {
  const v = args(argv, { 'telegram-port': { type: 'string' }, 'model-port': { type: 'string' }, 'bot-token': { type: 'string' } });
  const telegram = telegramServer(v['bot-token'] ?? process.env.FAKE_TELEGRAM_BOT_TOKEN);
  const model = modelServer();
  const tPort = await listen(telegram.server, port(v['telegram-port'] ?? process.env.FAKE_TELEGRAM_PORT ?? 18081, '--telegram-port'), 'fake Telegram');
  const mPort = await listen(model.server, port(v['model-port'] ?? process.env.FAKE_MODEL_PORT ?? 18082, '--model-port'), 'fake model');
  console.log(`fake Telegram Bot API: http://${HOST}:${tPort}   (channel add ... --api-base http://${HOST}:${tPort})`);
  console.log(`fake model (Chat Completions): http://${HOST}:${mPort}/v1   (backend set --base-url http://${HOST}:${mPort}/v1)`);
  const stop = () => {
    for (const s of [telegram.server, model.server]) {
      s.closeAllConnections();
      s.close();
    }
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

// --- helper modes -------------------------------------------------------------------------------

/** A Telegram Update carrying a text message, shaped as Telegram posts it to a webhook. */
function telegramUpdate({ updateId, chatId, fromId, name, text }) {
  const priv = chatId === fromId;
  const from = { id: fromId, is_bot: false, first_name: name, language_code: 'en' };
  const chat = priv ? { id: chatId, first_name: name, type: 'private' } : { id: chatId, title: 'Local group', type: chatId < 0 ? 'supergroup' : 'group' };
  const message = { message_id: updateId % 100000, from, chat, date: Math.floor(Date.now() / 1000), text };
  if (text.startsWith('/')) message.entities = [{ offset: 0, length: text.search(/\s|$/), type: 'bot_command' }];
  return { update_id: updateId, message };
}

function integer(value, name) {
  if (!/^-?[0-9]+$/.test(String(value))) fail(`${name}: an integer is required, got ${JSON.stringify(value)}`);
  return Number(value);
}

async function send(argv) {
  const v = args(argv, {
    gateway: { type: 'string' },
    'secret-file': { type: 'string' },
    instance: { type: 'string' },
    chat: { type: 'string' },
    from: { type: 'string' },
    name: { type: 'string' },
    text: { type: 'string' },
    'update-id': { type: 'string' },
    state: { type: 'string' },
    resend: { type: 'boolean' },
  });
  const gateway = (v.gateway ?? 'http://127.0.0.1:8788').replace(/\/+$/, '');
  if (v['secret-file'] === undefined) fail('send: --secret-file FILE is required (the webhook secret the channel verifies)');
  const secret = readFileSync(v['secret-file'], 'utf8').trim();
  const statePath = v.state ?? join(dirname(v['secret-file']), 'fake-telegram-state.json');
  const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, 'utf8')) : { last_update_id: 1000, last: null };
  let raw;
  let update;
  if (v.resend) {
    if (state.last === null) fail(`send --resend: no update was sent yet (state ${statePath})`);
    raw = state.last;
    update = JSON.parse(raw);
  } else {
    if (v.chat === undefined || v.text === undefined) fail('send: --chat ID and --text TEXT are required (or --resend)');
    const chatId = integer(v.chat, '--chat');
    const fromId = v.from === undefined ? chatId : integer(v.from, '--from');
    const updateId = v['update-id'] === undefined ? state.last_update_id + 1 : integer(v['update-id'], '--update-id');
    update = telegramUpdate({ updateId, chatId, fromId, name: v.name ?? 'Ada', text: v.text });
    raw = JSON.stringify(update);
    writeFileSync(statePath, JSON.stringify({ last_update_id: Math.max(state.last_update_id, updateId), last: raw }));
  }
  const url = `${gateway}/channels/telegram/${v.instance ?? 'bot'}/webhook`;
  let answer;
  try {
    answer = await call('POST', url, { headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret }, body: raw });
  } catch (e) {
    console.error(`fake-cloud: POST ${url}: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
  const m = update.message;
  console.log(`update ${update.update_id}${v.resend ? ' (again)' : ''} from ${m.from.id} in chat ${m.chat.id} → HTTP ${answer.status} ${answer.text}`);
  process.exit(answer.status >= 200 && answer.status < 300 ? 0 : 1);
}

async function sent(argv) {
  const v = args(argv, { telegram: { type: 'string' }, chat: { type: 'string' }, wait: { type: 'string' }, 'timeout-ms': { type: 'string' } });
  const base = (v.telegram ?? `http://${HOST}:${process.env.FAKE_TELEGRAM_PORT ?? 18081}`).replace(/\/+$/, '');
  const want = v.wait === undefined ? 0 : integer(v.wait, '--wait');
  const deadline = Date.now() + (v['timeout-ms'] === undefined ? 20_000 : integer(v['timeout-ms'], '--timeout-ms'));
  for (;;) {
    let list;
    try {
      list = JSON.parse((await call('GET', `${base}/_fake/sent`)).text).sent;
    } catch (e) {
      console.error(`fake-cloud: cannot read ${base}/_fake/sent (is the fake cloud running?): ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    }
    const mine = v.chat === undefined ? list : list.filter((s) => s.chat_id === String(v.chat));
    if (mine.length >= want) {
      for (const s of mine) console.log(`[telegram → chat ${s.chat_id}${s.thread_id === undefined ? '' : ` thread ${s.thread_id}`}] ${s.text}`);
      process.exit(0);
    }
    if (Date.now() > deadline) {
      console.error(`fake-cloud: ${mine.length} message(s) delivered${v.chat === undefined ? '' : ` to chat ${v.chat}`}, waited for ${want}`);
      process.exit(1);
    }
    await sleep(200);
  }
}

const USAGE = `usage:
  node fake-cloud.mjs [serve] [--telegram-port 18081] [--model-port 18082] [--bot-token TOKEN]
  node fake-cloud.mjs send --gateway URL --secret-file FILE --chat ID --text TEXT
                           [--from ID] [--name NAME] [--instance bot] [--update-id N] [--state FILE]
  node fake-cloud.mjs send --gateway URL --secret-file FILE --resend
  node fake-cloud.mjs sent [--telegram URL] [--chat ID] [--wait N] [--timeout-ms MS]
(see the comment at the top of this file, and README.md next to it)`;

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'help' || mode === '--help' || mode === '-h') console.log(USAGE);
else if (mode === 'send') await send(rest);
else if (mode === 'sent') await sent(rest);
else if (mode === 'serve') await serve(rest);
else if (mode === undefined || mode.startsWith('--')) await serve(process.argv.slice(2));
else fail(`unknown mode ${JSON.stringify(mode)}: serve (the default), send or sent`);
