/**
 * The plugin manifest, `tyrum.plugin.json`: what a plugin is, what it contributes, and what it
 * asks for. Requests are only half of a right: the operator's grant is the other half, and the
 * effective right is their intersection (see manifests/capabilities.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import { Strict } from './common.js';
import { McpServerContribution } from './mcp.js';

/** The host API version this gateway implements; manifests name a semver range of it. */
export const HOST_API_VERSION = '1.0.0';

export const PLUGIN_ID_PATTERN = '^[a-z][a-z0-9-]{0,62}[a-z0-9]$';
export const TOOL_NAME_PATTERN = '^[a-z][a-z0-9_]{0,62}$';
export const SECRET_NAME_PATTERN = '^[A-Z][A-Z0-9_]{0,63}$';
/** A DNS name or an IPv4/IPv6 literal; exact match only (no wildcards). */
const HOST_PATTERN = '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)$';

export const RISK_FLAGS = ['network', 'secrets', 'state_changing', 'destructive', 'storage'] as const;
export type RiskFlag = (typeof RISK_FLAGS)[number];
export const RiskFlag = Type.Union(RISK_FLAGS.map((r) => Type.Literal(r)), { description: 'An opt-in risk the operator must accept before the plugin can be enabled.' });

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export const HttpMethod = Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)));

export const Host = Type.String({ pattern: HOST_PATTERN, minLength: 1, maxLength: 253, description: 'Exact host name or IP literal (no wildcards).' });
/**
 * In a manifest's requests only: an exact host, or "*" for "hosts the operator names" — for
 * plugins whose destination is the operator's choice (a generic HTTP tool). The grant must
 * still name exact hosts; "*" never reaches the effective rights.
 */
export const RequestHost = Type.Union([Host, Type.Literal('*')], { description: 'Exact host, or "*": hosts the operator names in the grant.' });
export const SecretName = Type.String({ pattern: SECRET_NAME_PATTERN, description: 'A secret handle name, e.g. GITHUB_TOKEN.' });
/** An exact host, or an origin with scheme and optional port (the host part is a {@link Host}). */
const DESTINATION_PATTERN = `^(?:${HOST_PATTERN.slice(1, -1)}|https?://${HOST_PATTERN.slice(1, -1)}(?::[0-9]{1,5})?/?)$`;
/**
 * Where a secret's value may be sent (a grant's and a handle's binding): a bare host means that
 * host over https on port 443 only; plain http or another port is named as an origin, e.g.
 * `http://127.0.0.1:8080` or `https://api.example.com:8443` (lower case, no path).
 */
export const SecretDestination = Type.String({
  pattern: DESTINATION_PATTERN,
  minLength: 1,
  maxLength: 270,
  description: 'Exact host (https, port 443 only) or origin http(s)://host[:port] (no path, no wildcards).',
});

/** A JSON Schema object, checked for safety and compiled when the manifest is validated. */
export const JsonSchemaDoc = Type.Record(Type.String(), Type.Unknown(), { description: 'A JSON Schema (draft-07) object.' });

const egressFields = {
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Default: 443 for https, 80 for http (for host "*": any port the grant names).' })),
  scheme: Type.Optional(Type.Union([Type.Literal('https'), Type.Literal('http')], { description: 'Default https (for host "*": any scheme the grant names).' })),
  methods: Type.Optional(Type.Array(HttpMethod, { minItems: 1, uniqueItems: true, description: 'Default ["GET"].' })),
};
/** An egress rule as requested by a manifest (host may be "*"). */
export const EgressRequest = Strict({ host: RequestHost, ...egressFields });
export type EgressRequest = Static<typeof EgressRequest>;
/** An egress rule as granted by the operator (exact host only). */
export const EgressRule = Strict({ host: Host, ...egressFields });
export type EgressRule = Static<typeof EgressRule>;

export const SecretRequest = Strict({
  name: SecretName,
  destinations: Type.Array(RequestHost, { minItems: 1, maxItems: 16, uniqueItems: true, description: 'Hosts the secret may be sent to ("*": the hosts the operator names).' }),
  purpose: Type.Optional(Type.String({ maxLength: 200 })),
});

/**
 * How a tool's arguments reach its export, or how its export's output becomes the result. "json"
 * (the default): the export gets the arguments as JSON text / returns the result as JSON text.
 * "text" or "bytes": one string property of the schema, `field`, carries the raw bytes (UTF-8
 * text, or base64 in the JSON value).
 */
export const ToolIo = Strict({
  encoding: Type.Union([Type.Literal('json'), Type.Literal('text'), Type.Literal('bytes')], { description: 'json (default), text (raw UTF-8) or bytes (raw, base64 in the JSON field).' }),
  field: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'For text and bytes: the string property of the schema that carries the raw bytes.' })),
});
export type ToolIo = Static<typeof ToolIo>;

export const ToolContribution = Strict({
  id: Type.String({ pattern: TOOL_NAME_PATTERN, description: 'Tool name, unique in the plugin; the tool_id is <plugin id>.<id>.' }),
  export: Type.String({ minLength: 1, maxLength: 128, description: 'The wasm export that implements the tool (by default bytes in: JSON args, bytes out: JSON result; see input and output).' }),
  description: Type.String({ minLength: 1, maxLength: 2000 }),
  input_schema: JsonSchemaDoc,
  output_schema: JsonSchemaDoc,
  input: Type.Optional(ToolIo),
  output: Type.Optional(ToolIo),
  effect: Type.Union([Type.Literal('read_only'), Type.Literal('state_changing')]),
  postcondition: Type.Optional(
    Strict(
      {
        path: Type.String({ maxLength: 1024, description: 'RFC 6901 JSON pointer into the output ("" is the whole output).' }),
        exists: Type.Optional(Type.Literal(true)),
        equals: Type.Optional(Type.Unknown()),
        matches: Type.Optional(Type.String({ maxLength: 256, description: 'A regular expression a string value must match.' })),
      },
      { description: 'A check on every output of the tool; a call whose output fails it (or cannot be checked) is never reported as success.' },
    ),
  ),
});

const JsonPointer = Type.String({ maxLength: 256, pattern: '^(/[^/]*)*$', description: 'An RFC 6901 JSON pointer ("" is the whole document).' });

/** How the host checks that an inbound webhook really comes from the platform, before the plugin sees a byte. */
export const CHANNEL_VERIFY_SCHEMES = ['telegram_secret_token', 'slack_v0', 'hmac_sha256'] as const;
export type ChannelVerifyScheme = (typeof CHANNEL_VERIFY_SCHEMES)[number];

/**
 * A chat-channel adapter (docs/channels.md). The plugin only translates: `inbound.export` turns a
 * verified webhook body into normalised messages, `outbound.export` turns a reply into the
 * platform's HTTP requests. The host verifies webhooks, fixes every request's origin (the
 * instance's API base) and destination (the conversation's chat and thread, written at the
 * `destination` pointers), injects the bot credential where the plugin wrote `{{credential}}`,
 * sends, retries and records receipts. The plugin never sees the credential or the network.
 */
export const ChannelContribution = Strict({
  id: Type.String({ pattern: TOOL_NAME_PATTERN, description: 'Channel name, unique in the plugin; the channel type is <plugin id>.<id> (or just <plugin id> when the plugin has one channel).' }),
  description: Type.String({ minLength: 1, maxLength: 1000, description: 'What the channel connects to, for operators.' }),
  verify: Strict({
    scheme: Type.Union(CHANNEL_VERIFY_SCHEMES.map((s) => Type.Literal(s)), {
      description: 'telegram_secret_token: X-Telegram-Bot-Api-Secret-Token equals the secret; slack_v0: X-Slack-Signature is v0=HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" + body); hmac_sha256: X-Tyrum-Signature is sha256=HMAC-SHA256(secret, X-Tyrum-Timestamp + "." + body).',
    }),
    replay_window_s: Type.Optional(Type.Integer({ minimum: 30, maximum: 900, description: 'For timestamped schemes: how old (or how far in the future) a request may be, in seconds (default 300).' })),
  }, { description: 'How the host checks that a webhook comes from the platform, with the instance\'s verification secret.' }),
  inbound: Strict({
    export: Type.String({ minLength: 1, maxLength: 128, description: 'Export that parses a verified webhook: JSON {headers, body, instance} in, JSON {messages[], respond?} out.' }),
    headers: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9-]{1,64}$' }), { maxItems: 16, uniqueItems: true, description: 'Request headers (lower case) the plugin is shown; signature headers never are.' })),
  }, { description: 'The export that turns a verified webhook into normalised messages.' }),
  outbound: Strict({
    export: Type.String({ minLength: 1, maxLength: 128, description: 'Export that formats a reply: JSON {text, chat_id, thread_id, text_limit} in, JSON {requests[]} out.' }),
    api_base: Type.String({ maxLength: 500, pattern: '^https?://[^\\s?#]+$', description: 'The platform API base URL (an instance may name another, e.g. a self-hosted or local server); every request goes to its origin.' }),
    paths: Type.Array(Type.String({ maxLength: 256, pattern: '^(/[A-Za-z0-9._~{}:-]+)*$' }), {
      minItems: 1,
      maxItems: 16,
      uniqueItems: true,
      description: 'Every path (under the API base) an outbound request may use, exactly; {{credential}} may appear in them. No query strings: parameters go in the JSON body, where the host checks the destination. "" is the API base itself.',
    }),
    destination: Strict({
      chat: { ...JsonPointer, description: 'Where each request body carries the chat id.' },
      thread: Type.Optional({ ...JsonPointer, description: 'Where each request body carries the thread id (absent when the conversation has none).' }),
    }, { description: 'Where in each request body the chat (and thread) id sits; the host checks them against the conversation.' }),
    ok_pointer: Type.Optional({ ...JsonPointer, description: 'Where the platform\'s answer says true on success (e.g. /ok); anything else is a refusal.' }),
    receipt_pointer: Type.Optional({ ...JsonPointer, description: 'Where the platform\'s answer holds the id of the message sent (the delivery receipt).' }),
    sign: Type.Optional(Type.Literal('hmac_sha256', { description: 'Sign each request like hmac_sha256 inbound (X-Tyrum-Timestamp, X-Tyrum-Signature) with the instance\'s verification secret.' })),
  }, { description: 'The export that formats a reply as the platform\'s HTTP requests, and where the host checks and sends them.' }),
  text_limit: Type.Optional(Type.Integer({ minimum: 64, maximum: 100_000, description: 'Longest text the platform takes in one message (the formatter splits longer replies).' })),
});
export type ChannelContribution = Static<typeof ChannelContribution>;

export const PluginRequests = Strict({
  egress: Type.Optional(Type.Array(EgressRequest, { maxItems: 64 })),
  secrets: Type.Optional(Type.Array(SecretRequest, { maxItems: 32 })),
  kv: Type.Optional(Strict({ quota_bytes: Type.Integer({ minimum: 1, maximum: 64 * 1024 * 1024 }) })),
  memory: Type.Optional(Strict({ max_pages: Type.Integer({ minimum: 1, maximum: 65536, description: 'Linear memory cap in 64 KiB pages.' }) })),
  time: Type.Optional(Strict({ timeout_ms: Type.Integer({ minimum: 1, maximum: 300_000, description: 'Wall-clock budget per call.' }) })),
});
export type PluginRequests = Static<typeof PluginRequests>;

export const PluginManifest = Strict({
  $schema: Type.Optional(Type.String()),
  manifest_version: Type.Literal(1),
  id: Type.String({ pattern: PLUGIN_ID_PATTERN, description: 'Lowercase id, unique on a gateway.' }),
  name: Type.String({ minLength: 1, maxLength: 100 }),
  version: Type.String({ minLength: 5, maxLength: 64, description: 'Semantic version of the plugin.' }),
  description: Type.String({ maxLength: 1000 }),
  publisher: Type.String({ minLength: 1, maxLength: 100 }),
  license: Type.Optional(Type.String({ maxLength: 100 })),
  homepage: Type.Optional(Type.String({ maxLength: 500 })),
  engines: Strict({ tyrum: Type.String({ minLength: 1, maxLength: 100, description: 'Semver range of the host API (this gateway: ' + HOST_API_VERSION + ').' }) }),
  wasm: Strict({
    path: Type.String({ minLength: 1, maxLength: 255, pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[A-Za-z0-9._/-]+\\.wasm$', description: 'Relative path of the module inside the plugin.' }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  }),
  contributes: Strict({
    tools: Type.Array(ToolContribution, { maxItems: 64 }),
    channels: Type.Optional(Type.Array(ChannelContribution, { maxItems: 8, description: 'Chat-channel adapters (docs/channels.md).' })),
    mcp_servers: Type.Optional(Type.Array(McpServerContribution, { maxItems: 16, description: 'MCP servers this plugin brings; each starts quarantined until an operator approves it.' })),
  }),
  requests: Type.Optional(PluginRequests),
  risk: Type.Optional(Type.Array(RiskFlag, { uniqueItems: true })),
  config_schema: Type.Optional(JsonSchemaDoc),
});
export type PluginManifest = Static<typeof PluginManifest>;

/** The operator's half of the two-key model; same shape as requests, plus accepted risks. */
export const PluginGrant = Strict({
  egress: Type.Optional(Type.Array(EgressRule, { maxItems: 64 })),
  secrets: Type.Optional(Type.Array(Strict({ name: SecretName, destinations: Type.Optional(Type.Array(SecretDestination, { minItems: 1, maxItems: 16, uniqueItems: true })) }), { maxItems: 32 })),
  kv: Type.Optional(Strict({ quota_bytes: Type.Integer({ minimum: 1, maximum: 64 * 1024 * 1024 }) })),
  memory: Type.Optional(Strict({ max_pages: Type.Integer({ minimum: 1, maximum: 65536 }) })),
  time: Type.Optional(Strict({ timeout_ms: Type.Integer({ minimum: 1, maximum: 300_000 }) })),
  accept_risks: Type.Optional(Type.Array(RiskFlag, { uniqueItems: true })),
});
export type PluginGrant = Static<typeof PluginGrant>;
