/**
 * The local test harness behind `tyrum plugin test`: runs an author's test cases against the
 * plugin in the gateway's own sandbox ({@link SandboxPool}) under the budgets the gateway would
 * give it, with scripted host services instead of the network and the store.
 *
 * The budgets are computed exactly as PluginHost computes them: effective rights of the manifest
 * under a grant of everything it requests with its declared risks accepted
 * (`grantAllRequested`), so `memoryPages` and `wallMs` come from `requests.memory` and
 * `requests.time`, everything else from the sandbox defaults. A request for host "*" (hosts the
 * operator names) is granted the hosts the case's recordings name, as an operator would.
 *
 * Test files are `DIR/tests/*.test.json`, each an array of cases:
 *
 *     { "name"?, "tool": "<tool id>", "input": {...}, "expect"?: <output>, "expect_error"?: "<substring>",
 *       "config"?: {...}, "kv"?: { "<key>": "<value>" },
 *       "http"?: [{ "method"?, "url", "status", "headers"?, "body"?, "expect_headers"? }],
 *       "secrets"?: { "NAME": "<fake value>" } }
 *
 * Channel plugins (`contributes.channels`, docs/channels.md) have two more case kinds:
 *
 *     { "name"?, "inbound": { "channel"?, "body": <JSON or string>, "headers"?: {...}, "instance"? },
 *       "verify"?: { "secret", "sign"?: true, "now"?: <unix seconds> },
 *       "expect"?: { "messages"?: [...], "respond"?: {...} | null, "error"?: "<code or substring>", "unverified"?: true | "<reason>" } }
 *     { "name"?, "outbound": { "channel"?, "text", "chat_id", "thread_id"?, "text_limit"?, "api_base"?, "credential"? },
 *       "expect"?: { "requests"?: [{ "method"?, "url"?, "path"?, "headers"?, "body"? }], "count"?, "error"? } }
 *
 * An inbound case first verifies the recorded webhook as the host does (verifyWebhook, with the
 * request's own timestamp as the clock unless `now` is given), then calls the inbound export with
 * only the headers the manifest lists, and checks the answer with the host's checkInboundResult. An
 * outbound case calls the outbound export, checks the answer with checkOutboundResult (so a request
 * to another chat or thread fails with TYRUM_ERR_CHANNEL_DESTINATION, as at the gateway), and
 * builds each request's URL and headers with the host's outboundUrl and outboundHeaders. Messages,
 * respond, requests, headers and bodies match partially (the keys given must match; arrays must
 * have the same length). The credential and verification secrets are redacted from the report.
 *
 * A tool case runs on a fresh instance: config checked against `config_schema` (defaults applied),
 * input against `input_schema`, the call, the output against `output_schema` and the tool's
 * postcondition, then `expect` (deep equality) or `expect_error` (a substring of the error).
 * HTTP goes through the gateway's own egress handler (core/egress: granted origin and method,
 * secret templates only in header values, a secret only to its origins, redirects re-checked,
 * responses redacted) with the recordings in place of the network; a request no recording
 * matches fails the case. Fake secret values are redacted from responses before the plugin sees
 * them (as the gateway does) and from everything the harness reports.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { SECRET_NAME_PATTERN, type ChannelContribution, type PluginGrant, type PluginManifest } from '../../schemas/index.js';
import { TyrumError, isTyrumError } from '../../core/errors/index.js';
import { validate } from '../../core/protocol/validate.js';
import { canonicalJson } from '../../core/util/canonical-json.js';
import { Redactor } from '../../core/secrets/redact.js';
import { MIN_SECRET_BYTES } from '../../core/secrets/store.js';
import { originLabel, urlOrigin } from '../../core/secrets/destination.js';
import { createEgressHandler, parseTemplate, REDIRECT_STATUSES, type EgressHop, type EgressReply } from '../../core/egress/index.js';
import { checkPostcondition } from '../../core/execution/postcondition.js';
import { outputMismatch, rawIo, toolInput, toolOutput } from '../../core/registry/io.js';
import { SandboxPool, sandboxError, type CallUsage, type EgressHandler, type HostApi, type KvStore, type LogEntry, type SandboxLimits } from '../../sandbox/index.js';
import { compilePluginSchema, effectiveRights, grantAllRequested, manifestExports, readPluginSource, toIssues, validatePluginConfig, type EffectiveRights, type PluginSource } from '../../manifests/index.js';
import { issuesText } from '../../manifests/json-schema.js';
import { checkInboundResult, checkOutboundResult, outboundHeaders, outboundUrl, CREDENTIAL_PLACEHOLDER, type InboundResult, type OutboundInput } from '../../core/channels/abi.js';
import { REPLAY_WINDOW_DEFAULT_S, signHmac, signSlack, verifyWebhook } from '../../core/channels/verify.js';

// --- the test file format ---

const Headers = Type.Record(Type.String({ minLength: 1, maxLength: 256 }), Type.String({ maxLength: 16_384 }));

const HttpRecording = Type.Object(
  {
    method: Type.Optional(Type.String({ pattern: '^[A-Za-z]{1,16}$' })),
    url: Type.String({ minLength: 1, maxLength: 8192 }),
    status: Type.Integer({ minimum: 100, maximum: 999 }),
    headers: Type.Optional(Headers),
    body: Type.Optional(Type.Unknown()),
    expect_headers: Type.Optional(Headers),
  },
  { additionalProperties: false },
);

const TestCase = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    tool: Type.String({ minLength: 1, maxLength: 200 }),
    input: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    expect: Type.Optional(Type.Unknown()),
    expect_error: Type.Optional(Type.String({ minLength: 1 })),
    config: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    kv: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String())),
    http: Type.Optional(Type.Array(HttpRecording, { maxItems: 256 })),
    secrets: Type.Optional(Type.Record(Type.String({ pattern: SECRET_NAME_PATTERN }), Type.String({ minLength: 1, maxLength: 8192 }))),
  },
  { additionalProperties: false },
);

const ChannelId = Type.String({ minLength: 1, maxLength: 200 });
const ErrorExpectation = Type.String({ minLength: 1, description: 'An error code (TYRUM_ERR_...) or a substring of the error message.' });
const VERIFY_REASONS = ['missing_header', 'bad_signature', 'stale_timestamp', 'bad_timestamp'] as const;

/** A recorded webhook, sent to the channel's inbound export after the host's checks. */
const InboundCase = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    inbound: Type.Object(
      {
        channel: Type.Optional(ChannelId),
        body: Type.Unknown({ description: 'The webhook body: a string is the raw body; any other JSON value is sent as compact JSON text.' }),
        headers: Type.Optional(Headers),
        instance: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      },
      { additionalProperties: false },
    ),
    verify: Type.Optional(
      Type.Object(
        {
          secret: Type.String({ minLength: 1, maxLength: 8192 }),
          sign: Type.Optional(Type.Boolean({ description: 'Compute the signature headers with the secret (instead of recording them).' })),
          now: Type.Optional(Type.Integer({ minimum: 0, description: "The host's clock, unix seconds (default: the request's own timestamp header, else now)." })),
        },
        { additionalProperties: false },
      ),
    ),
    expect: Type.Optional(
      Type.Object(
        {
          messages: Type.Optional(Type.Array(Type.Unknown())),
          respond: Type.Optional(Type.Unknown()),
          error: Type.Optional(ErrorExpectation),
          unverified: Type.Optional(Type.Union([Type.Literal(true), ...VERIFY_REASONS.map((r) => Type.Literal(r))])),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** A reply, formatted by the channel's outbound export into the platform's requests. */
const OutboundCase = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    outbound: Type.Object(
      {
        channel: Type.Optional(ChannelId),
        text: Type.String(),
        chat_id: Type.String({ minLength: 1, maxLength: 256 }),
        thread_id: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])),
        text_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
        api_base: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
        credential: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()])),
      },
      { additionalProperties: false },
    ),
    expect: Type.Optional(
      Type.Object(
        {
          requests: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  method: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
                  url: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
                  path: Type.Optional(Type.String({ maxLength: 2048 })),
                  headers: Type.Optional(Headers),
                  body: Type.Optional(Type.Unknown()),
                },
                { additionalProperties: false },
              ),
              { maxItems: 64 },
            ),
          ),
          count: Type.Optional(Type.Integer({ minimum: 0 })),
          error: Type.Optional(ErrorExpectation),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type HttpRecording = Static<typeof HttpRecording>;
export type TestCase = Static<typeof TestCase>;
export type InboundCase = Static<typeof InboundCase>;
export type OutboundCase = Static<typeof OutboundCase>;

/** The credential an outbound case injects unless it names one. */
export const TEST_CREDENTIAL = 'test-token';
/** The instance name an inbound case passes unless it names one. */
export const TEST_INSTANCE = 'test';
/** The text limit an outbound case passes when neither it nor the channel names one. */
export const DEFAULT_TEXT_LIMIT = 4096;

/** Directory (inside the plugin) and suffix of test files. */
export const TESTS_DIR = 'tests';
export const TEST_FILE_SUFFIX = '.test.json';

// --- results ---

/** Budget use of one call; null where the sandbox reported nothing (a failed call). */
export interface CaseUsage {
  wall_ms: number;
  mem_pages_peak: number | null;
  host_calls: number | null;
  alloc_bytes: number | null;
  egress_bytes: number | null;
  output_bytes: number | null;
}

/** The per-call budgets the gateway would enforce for this plugin. */
export interface HarnessLimits {
  wall_ms: number;
  memory_pages: number;
  host_calls: number;
  alloc_bytes: number;
  egress_bytes: number;
  output_bytes: number;
}

/** One outbound request as the host would send it (credential in place; redacted in the report). */
export interface SentRequest {
  method: string;
  path: string;
  url: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

export interface CaseResult {
  /** Test file, relative to the plugin directory. */
  file: string;
  /** 1-based position in the file (0: the file itself could not be read). */
  index: number;
  name: string;
  /** What the case exercises: a tool call, or a channel's inbound or outbound export. */
  kind: 'tool' | 'inbound' | 'outbound';
  /** The tool id ("-" for channel cases). */
  tool: string;
  /** The channel id (channel cases). */
  channel?: string;
  /** Inbound: how the host's webhook check went ("ok", a refusal reason, or "skipped" without `verify`). */
  verified?: string;
  /** Inbound: the names of the headers the plugin was shown (those the manifest lists). */
  shown_headers?: string[];
  /** Inbound: the normalised answer (after checkInboundResult). */
  inbound?: InboundResult;
  /** Outbound: the requests the host would send. */
  outbound?: SentRequest[];
  ok: boolean;
  /** Why the case failed (empty when it passed). */
  problems: string[];
  /** The tool's output when the call succeeded. */
  output?: unknown;
  /** The error the call ended with. */
  error?: { code: string; message: string };
  usage: CaseUsage | null;
  /** HTTP requests the plugin made and the recorded status each got (null: refused). */
  requests: Array<{ method: string; url: string; status: number | null }>;
  logs: Array<{ level: string; message: string }>;
}

export interface HarnessReport {
  plugin: { id: string; version: string; dir: string };
  limits: HarnessLimits;
  cases: CaseResult[];
  passed: number;
  failed: number;
}

export interface HarnessOptions {
  /** Test files to run (default: every DIR/tests/*.test.json, sorted by name). */
  files?: string[];
  /** Run in this pool instead of a new one (tests; it is left open). */
  pool?: SandboxPool;
}

// --- running ---

/** Run the plugin's tests. Throws only when the plugin itself cannot be read or no test exists. */
export async function runPluginTests(dir: string, opts: HarnessOptions = {}): Promise<HarnessReport> {
  const root = resolve(dir);
  const src = await readPluginSource(root);
  const files = opts.files?.map((f) => resolve(root, f)) ?? (await discover(root));
  if (files.length === 0) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `no tests found: expected ${join(root, TESTS_DIR)}/*${TEST_FILE_SUFFIX} (each an array of cases)`);
  }
  const pool = opts.pool ?? new SandboxPool({ workers: 1 });
  const limits = pluginLimits(src.manifest, pool.defaultLimits);
  const cases: CaseResult[] = [];
  const fakes: Array<{ name: string; value: string }> = [];
  let seq = 0;
  try {
    for (const file of files) {
      const label = relative(root, file) || file;
      let list: unknown[];
      try {
        list = await readCases(file, label);
      } catch (e) {
        cases.push(failedFile(label, e));
        continue;
      }
      for (let i = 0; i < list.length; i++) {
        const raw = list[i];
        fakes.push(...collectSecrets(raw));
        cases.push(await runCase(src, pool, label, i + 1, raw, `case-${++seq}`));
      }
    }
  } finally {
    if (opts.pool === undefined) await pool.close();
  }
  // Whatever a case printed, no fake secret value of any case leaves the harness.
  const redactor = redactorOf(fakes);
  const redacted = redactor ? (redactor.redactDeep(cases) as CaseResult[]) : cases;
  const passed = redacted.filter((c) => c.ok).length;
  return { plugin: { id: src.manifest.id, version: src.manifest.version, dir: root }, limits, cases: redacted, passed, failed: redacted.length - passed };
}

async function discover(root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(join(root, TESTS_DIR));
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith(TEST_FILE_SUFFIX))
    .sort()
    .map((n) => join(root, TESTS_DIR, n));
}

async function readCases(file: string, label: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: cannot be read (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: must be a JSON array of test cases`);
  return v;
}

function failedFile(label: string, e: unknown): CaseResult {
  return { file: label, index: 0, name: label, kind: 'tool', tool: '-', ok: false, problems: [(e as Error).message], usage: null, requests: [], logs: [] };
}

/** The fake values a raw case names (collected before validation, so even a bad case's are redacted). */
function collectSecrets(raw: unknown): Array<{ name: string; value: string }> {
  const out: Array<{ name: string; value: string }> = [];
  const add = (name: string, value: unknown) => {
    if (typeof value === 'string' && Buffer.byteLength(value) >= MIN_SECRET_BYTES) out.push({ name, value });
  };
  const s = (raw as { secrets?: unknown } | null)?.secrets;
  if (typeof s === 'object' && s !== null) for (const [name, value] of Object.entries(s)) add(name.slice(0, 64), value);
  add('VERIFY_SECRET', (raw as { verify?: { secret?: unknown } } | null)?.verify?.secret);
  const outbound = (raw as { outbound?: { credential?: unknown } } | null)?.outbound;
  if (typeof outbound === 'object' && outbound !== null) {
    const credential = outbound.credential === undefined ? TEST_CREDENTIAL : outbound.credential;
    add('CREDENTIAL', credential);
    // In a path the credential is URL-encoded.
    if (typeof credential === 'string' && encodeURIComponent(credential) !== credential) add('CREDENTIAL', encodeURIComponent(credential));
  }
  return out;
}

function redactorOf(fakes: ReadonlyArray<{ name: string; value: string }>): Redactor | null {
  if (fakes.length === 0) return null;
  return new Redactor(fakes.map((f) => ({ name: f.name, value: Buffer.from(f.value, 'utf8') })));
}

/** The per-call budgets, as PluginHost sets them: memory and time from the effective rights, the rest defaults. */
function pluginLimits(manifest: PluginManifest, defaults: Readonly<SandboxLimits>): HarnessLimits {
  const eff = effectiveRights(manifest, grantAllRequested(manifest));
  return {
    wall_ms: eff.time.timeout_ms,
    memory_pages: eff.memory.max_pages,
    host_calls: defaults.maxHostCalls,
    alloc_bytes: defaults.maxAllocBytes,
    egress_bytes: defaults.maxEgressBytes,
    output_bytes: defaults.maxOutputBytes,
  };
}

/**
 * The grant the harness plays the operator with: everything requested, declared risks accepted,
 * and for "*" requests the hosts the recordings name.
 */
export function harnessGrant(manifest: PluginManifest, recordings: readonly HttpRecording[]): PluginGrant {
  const grant = grantAllRequested(manifest);
  const req = manifest.requests ?? {};
  const recorded: Array<{ host: string; scheme: 'http' | 'https'; port: number | undefined; origin: string; method: string }> = [];
  for (const r of recordings) {
    const u = URL.canParse(r.url) ? new URL(r.url) : null; // an unparsable URL is reported when the case runs
    const o = u && urlOrigin(u);
    if (!u || !o) continue;
    recorded.push({ host: o.host.replace(/^\[|\]$/g, ''), scheme: o.scheme, port: u.port === '' ? undefined : o.port, origin: originLabel(o), method: (r.method ?? 'GET').toUpperCase() });
  }
  if ((req.egress ?? []).some((e) => e.host === '*')) {
    const extra: NonNullable<PluginGrant['egress']> = [];
    for (const r of recorded) {
      const methods = [...new Set(recorded.filter((x) => x.host === r.host && x.scheme === r.scheme && x.port === r.port).map((x) => x.method))].filter((m) =>
        ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(m),
      ) as NonNullable<NonNullable<PluginGrant['egress']>[number]['methods']>;
      if (methods.length === 0 || extra.some((x) => x.host === r.host && x.scheme === r.scheme && x.port === r.port)) continue;
      extra.push({ host: r.host, scheme: r.scheme, ...(r.port !== undefined ? { port: r.port } : {}), methods });
    }
    if (extra.length > 0) grant.egress = [...(grant.egress ?? []), ...extra];
  }
  const wild = (req.secrets ?? []).filter((s) => s.destinations.includes('*'));
  if (wild.length > 0) {
    // Each recorded origin, written out (`https://host:443` is the same destination as `host`).
    const hosts = [...new Set(recorded.map((r) => r.origin))];
    const secrets = [...(grant.secrets ?? [])];
    for (const s of wild) {
      const fixed = s.destinations.filter((d) => d !== '*');
      const destinations = [...new Set([...fixed, ...hosts])];
      if (destinations.length === 0) continue;
      const i = secrets.findIndex((x) => x.name === s.name);
      if (i >= 0) secrets[i] = { name: s.name, destinations };
      else secrets.push({ name: s.name, destinations });
    }
    if (secrets.length > 0) grant.secrets = secrets;
  }
  return grant;
}

/** Extism config is string → string: strings pass as-is, anything else as JSON (as PluginHost does). */
function extismConfig(config: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

/** Per-plugin key-value storage in memory, with the quota counted as the store counts it (keys + values). */
function memoryKv(seed: Record<string, string>, quota: number): KvStore & { bytes(): number } {
  const data = new Map<string, Uint8Array>();
  for (const [k, v] of Object.entries(seed)) data.set(k, Buffer.from(v, 'utf8'));
  const bytes = () => [...data].reduce((n, [k, v]) => n + Buffer.byteLength(k) + v.byteLength, 0);
  return {
    bytes,
    get: (key) => data.get(key) ?? null,
    set: (key, value) => {
      if (value === null) {
        data.delete(key);
        return true;
      }
      const old = data.get(key);
      const next = bytes() - (old ? Buffer.byteLength(key) + old.byteLength : 0) + Buffer.byteLength(key) + value.byteLength;
      if (next > quota) return false;
      data.set(key, new Uint8Array(value));
      return true;
    },
  };
}

async function runCase(src: PluginSource, pool: SandboxPool, file: string, index: number, raw: unknown, keySuffix: string): Promise<CaseResult> {
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && !('tool' in raw)) {
    if ('inbound' in raw) return runInboundCase(src, pool, file, index, raw, keySuffix);
    if ('outbound' in raw) return runOutboundCase(src, pool, file, index, raw, keySuffix);
  }
  const manifest = src.manifest;
  const rawName = (raw as { name?: unknown } | null)?.name;
  const rawTool = (raw as { tool?: unknown } | null)?.tool;
  const result: CaseResult = {
    file,
    index,
    name: typeof rawName === 'string' && rawName !== '' ? rawName : `${file} #${index}`,
    kind: 'tool',
    tool: typeof rawTool === 'string' ? rawTool : '?',
    ok: false,
    problems: [],
    usage: null,
    requests: [],
    logs: [],
  };
  const issues = validate(TestCase, raw);
  if (issues.length > 0) {
    result.problems.push(`not a valid test case: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    return result;
  }
  const c = raw as TestCase;
  if (c.expect !== undefined && c.expect_error !== undefined) {
    result.problems.push('give "expect" or "expect_error", not both');
    return result;
  }
  const toolName = c.tool.startsWith(`${manifest.id}.`) ? c.tool.slice(manifest.id.length + 1) : c.tool;
  const tool = manifest.contributes.tools.find((t) => t.id === toolName);
  if (tool === undefined) {
    result.problems.push(`no tool "${c.tool}" in plugin ${manifest.id} (tools: ${manifest.contributes.tools.map((t) => t.id).join(', ')})`);
    return result;
  }
  const toolId = `${manifest.id}.${tool.id}`;

  // Setup: fake secrets, rights, seeded state. Problems here are the test's, not the plugin's.
  const secrets = c.secrets ?? {};
  for (const [name, value] of Object.entries(secrets)) {
    if (Buffer.byteLength(value) < MIN_SECRET_BYTES) result.problems.push(`secrets.${name}: a fake value needs at least ${MIN_SECRET_BYTES} bytes (shorter values cannot be redacted reliably)`);
  }
  const recordings = c.http ?? [];
  recordings.forEach((r, i) => {
    if (!URL.canParse(r.url)) result.problems.push(`http[${i}].url: not a URL`);
  });
  const rights = effectiveRights(manifest, harnessGrant(manifest, recordings));
  if (c.kv !== undefined && rights.kv === null) result.problems.push('kv: the plugin does not request key-value storage (requests.kv), so seeded state can never be read');
  const kv = rights.kv ? memoryKv(c.kv ?? {}, rights.kv.quota_bytes) : null;
  if (kv && rights.kv && kv.bytes() > rights.kv.quota_bytes) result.problems.push(`kv: the seeded state is ${kv.bytes()} bytes, above the plugin's quota of ${rights.kv.quota_bytes} bytes (requests.kv.quota_bytes)`);
  if (result.problems.length > 0) return result;

  const redactor = new Redactor(Object.entries(secrets).map(([name, value]) => ({ name, value: Buffer.from(value, 'utf8') })));
  const http = new ScriptedHttp(recordings, rights, secrets, redactor);
  const hostApi: HostApi = {};
  if (kv) hostApi.kv = kv;
  hostApi.egress = http.handler; // as at the gateway: a plugin granted no egress is refused (no_rights)

  const key = `${manifest.id}.${keySuffix}`;
  let loaded = false;
  let error: TyrumError | null = null;
  let output: unknown;
  let usage: CallUsage | null = null;
  let logs: readonly LogEntry[] = [];
  let callStarted = 0;
  let callMs = 0;
  try {
    const config = validatePluginConfig(manifest, c.config ?? {}, {
      secretExists: (n) => Object.hasOwn(secrets, n),
      secretGranted: (n) => rights.secrets.some((s) => s.name === n),
    });
    const input = c.input ?? {};
    const inputCheck = compilePluginSchema(tool.input_schema, `${toolId} input_schema`);
    if (!inputCheck(input)) {
      throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}: ${issuesText(toIssues(inputCheck.errors))}`);
    }
    await pool.load(key, {
      wasm: src.wasmBytes,
      expectedSha256: src.wasmSha256,
      exports: manifest.contributes.tools.map((t) => t.export),
      limits: { memoryPages: rights.memory.max_pages, wallMs: rights.time.timeout_ms },
      config: extismConfig(config),
      hostApi,
    });
    loaded = true;
    callStarted = performance.now();
    const res = await pool.call(key, tool.export, toolInput(toolId, rawIo(tool.input), input));
    callMs = performance.now() - callStarted;
    usage = res.usage;
    logs = res.logs;
    output = toolOutput(toolId, rawIo(tool.output), res.output);
    const outputCheck = compilePluginSchema(tool.output_schema, `${toolId} output_schema`);
    if (!outputCheck(output)) {
      throw new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', `${outputMismatch(toolId, res.output, output)}: ${issuesText(toIssues(outputCheck.errors))}`);
    }
    if (tool.postcondition) {
      const pc = checkPostcondition(tool.postcondition, output);
      if (!pc.ok) throw new TyrumError('TYRUM_ERR_POSTCONDITION_FAILED', `postcondition failed: ${pc.reason}`);
    }
  } catch (e) {
    if (callStarted > 0 && callMs === 0) callMs = performance.now() - callStarted;
    error = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `harness: ${(e as Error)?.message ?? String(e)}`);
    if (Array.isArray(error.details?.logs)) logs = error.details.logs as LogEntry[];
  } finally {
    if (loaded) await pool.unload(key).catch(() => undefined);
  }

  result.requests = http.requests;
  result.logs = logs.map((l) => ({ level: l.level, message: l.message }));
  if (usage) {
    result.usage = {
      wall_ms: round(usage.wall_ms),
      mem_pages_peak: usage.mem_pages_peak,
      host_calls: usage.host_calls,
      alloc_bytes: usage.alloc_bytes,
      egress_bytes: usage.egress_bytes,
      output_bytes: usage.output_bytes,
    };
  } else if (callStarted > 0) {
    result.usage = { wall_ms: round(callMs), mem_pages_peak: null, host_calls: null, alloc_bytes: null, egress_bytes: null, output_bytes: null };
  }
  if (error) result.error = { code: error.code, message: error.message };
  else result.output = output;

  // Verdict.
  const problems = [...http.problems];
  if (c.expect_error !== undefined) {
    if (error === null) problems.push(`expected an error containing ${JSON.stringify(c.expect_error)}, but the call succeeded with ${preview(output)}`);
    else if (!error.message.includes(c.expect_error)) problems.push(`expected an error containing ${JSON.stringify(c.expect_error)}, got: ${error.message}`);
  } else if (error !== null) {
    if (!http.problems.includes(error.message)) problems.push(`${error.code}: ${error.message}`);
  } else if (c.expect !== undefined && canonicalJson(output) !== canonicalJson(c.expect)) {
    const at = firstDifference(c.expect, output, '');
    problems.push(`output differs from expect${at ? ` at ${at}` : ''}\n  expected ${preview(c.expect)}\n  got      ${preview(output)}`);
  }
  result.problems = problems;
  result.ok = problems.length === 0;
  return result;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function preview(v: unknown, max = 2000): string {
  const s = v === undefined ? 'nothing' : canonicalJson(v);
  return s.length > max ? `${s.slice(0, max)}… (${s.length} characters)` : s;
}

/** The JSON pointer of the first place `a` and `b` differ, with both values there. */
function firstDifference(a: unknown, b: unknown, at: string): string | null {
  if (canonicalJson(a) === canonicalJson(b)) return null;
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= a.length || i >= b.length) return `${at}/${i}: ${i >= a.length ? 'unexpected item' : 'missing item'}`;
      const d = firstDifference(a[i], b[i], `${at}/${i}`);
      if (d) return d;
    }
  } else if (isObj(a) && isObj(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const p = `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (!(k in b)) return `${p}: missing`;
      if (!(k in a)) return `${p}: unexpected key`;
      const d = firstDifference(a[k], b[k], p);
      if (d) return d;
    }
  }
  return `${at || '/'}: expected ${preview(a, 200)}, got ${preview(b, 200)}`;
}

// --- channel cases: the inbound and outbound exports of a chat-channel adapter ---

/** Headers that carry a webhook's signature: the host never shows them to the plugin. */
const SIGNATURE_HEADERS = new Set(['x-tyrum-signature', 'x-tyrum-timestamp', 'x-slack-signature', 'x-slack-request-timestamp', 'x-telegram-bot-api-secret-token']);

function channelResult(file: string, index: number, raw: object, kind: 'inbound' | 'outbound'): CaseResult {
  const rawName = (raw as { name?: unknown }).name;
  return {
    file,
    index,
    name: typeof rawName === 'string' && rawName !== '' ? rawName : `${file} #${index}`,
    kind,
    tool: '-',
    ok: false,
    problems: [],
    usage: null,
    requests: [],
    logs: [],
  };
}

/** The case's channel: the one it names, else the plugin's only one; null (with a problem) otherwise. */
function pickChannel(manifest: PluginManifest, named: string | undefined, result: CaseResult): ChannelContribution | null {
  const channels = manifest.contributes.channels ?? [];
  if (channels.length === 0) {
    result.problems.push(`plugin ${manifest.id} has no channel (contributes.channels), so it has no ${result.kind} export to test`);
    return null;
  }
  if (named === undefined) {
    if (channels.length === 1) return channels[0]!;
    result.problems.push(`${result.kind}.channel: the plugin has ${channels.length} channels (${channels.map((c) => c.id).join(', ')}); name one`);
    return null;
  }
  const id = named.startsWith(`${manifest.id}.`) ? named.slice(manifest.id.length + 1) : named;
  const ch = channels.find((c) => c.id === id);
  if (ch === undefined) result.problems.push(`no channel "${named}" in plugin ${manifest.id} (channels: ${channels.map((c) => c.id).join(', ')})`);
  return ch ?? null;
}

/**
 * One call of a channel export in the sandbox, under the plugin's budgets, with its default config
 * and (if requested) empty key-value storage; no egress: the host does the network for channels.
 * Returns the parsed JSON answer, or the error the call (or its answer) ended with.
 */
async function callChannelExport(
  src: PluginSource,
  pool: SandboxPool,
  key: string,
  exportName: string,
  input: unknown,
  result: CaseResult,
): Promise<{ answer: unknown; error: TyrumError | null }> {
  const manifest = src.manifest;
  const rights = effectiveRights(manifest, grantAllRequested(manifest));
  const hostApi: HostApi = {};
  if (rights.kv) hostApi.kv = memoryKv({}, rights.kv.quota_bytes);
  let loaded = false;
  let callStarted = 0;
  let callMs = 0;
  let usage: CallUsage | null = null;
  let logs: readonly LogEntry[] = [];
  let answer: unknown;
  let error: TyrumError | null = null;
  try {
    const config = validatePluginConfig(manifest, {}, { secretExists: () => false, secretGranted: (n) => rights.secrets.some((s) => s.name === n) });
    await pool.load(key, {
      wasm: src.wasmBytes,
      expectedSha256: src.wasmSha256,
      exports: manifestExports(manifest),
      limits: { memoryPages: rights.memory.max_pages, wallMs: rights.time.timeout_ms },
      config: extismConfig(config),
      hostApi,
    });
    loaded = true;
    callStarted = performance.now();
    const res = await pool.call(key, exportName, Buffer.from(JSON.stringify(input), 'utf8'));
    callMs = performance.now() - callStarted;
    usage = res.usage;
    logs = res.logs;
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(res.output);
      answer = JSON.parse(text);
    } catch {
      throw new TyrumError('TYRUM_ERR_CHANNEL_ADAPTER', `the ${result.kind} export "${exportName}" returned something other than JSON text: ${preview(Buffer.from(res.output).toString('utf8'), 200)}`);
    }
  } catch (e) {
    if (callStarted > 0 && callMs === 0) callMs = performance.now() - callStarted;
    error = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `harness: ${(e as Error)?.message ?? String(e)}`);
    if (Array.isArray(error.details?.logs)) logs = error.details.logs as LogEntry[];
  } finally {
    if (loaded) await pool.unload(key).catch(() => undefined);
  }
  result.logs = logs.map((l) => ({ level: l.level, message: l.message }));
  if (usage) {
    result.usage = {
      wall_ms: round(usage.wall_ms),
      mem_pages_peak: usage.mem_pages_peak,
      host_calls: usage.host_calls,
      alloc_bytes: usage.alloc_bytes,
      egress_bytes: usage.egress_bytes,
      output_bytes: usage.output_bytes,
    };
  } else if (callStarted > 0) {
    result.usage = { wall_ms: round(callMs), mem_pages_peak: null, host_calls: null, alloc_bytes: null, egress_bytes: null, output_bytes: null };
  }
  return { answer, error };
}

/** Whether `error` is what `expected` names: its code, or a substring of its message. */
function errorMatches(error: TyrumError, expected: string): boolean {
  return error.code === expected || error.message.includes(expected);
}

/** The verdict on an expected error (null: the case expects none). */
function errorVerdict(error: TyrumError | null, expected: string | undefined, what: string): string | null {
  if (expected === undefined) return error === null ? null : `${error.code}: ${error.message}`;
  if (error === null) return `expected an error matching ${JSON.stringify(expected)}, but ${what}`;
  return errorMatches(error, expected) ? null : `expected an error matching ${JSON.stringify(expected)}, got ${error.code}: ${error.message}`;
}

/**
 * The first place where `actual` does not match `expected` partially (the keys `expected` gives
 * must match; arrays must have the same length, item by item; anything else must be equal), or null.
 */
export function partialDifference(expected: unknown, actual: unknown, at = ''): string | null {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length !== actual.length) return `${at || '/'}: expected ${expected.length} item${expected.length === 1 ? '' : 's'}, got ${actual.length}`;
    for (let i = 0; i < expected.length; i++) {
      const d = partialDifference(expected[i], actual[i], `${at}/${i}`);
      if (d) return d;
    }
    return null;
  }
  if (isObj(expected) && isObj(actual)) {
    for (const k of Object.keys(expected)) {
      const p = `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (!Object.hasOwn(actual, k)) return `${p}: missing (expected ${preview(expected[k], 200)})`;
      const d = partialDifference(expected[k], actual[k], p);
      if (d) return d;
    }
    return null;
  }
  if (canonicalJson(expected) === canonicalJson(actual)) return null;
  return `${at || '/'}: expected ${preview(expected, 200)}, got ${preview(actual, 200)}`;
}

async function runInboundCase(src: PluginSource, pool: SandboxPool, file: string, index: number, raw: object, keySuffix: string): Promise<CaseResult> {
  const manifest = src.manifest;
  const result = channelResult(file, index, raw, 'inbound');
  const issues = validate(InboundCase, raw);
  if (issues.length > 0) {
    result.problems.push(`not a valid inbound case: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    return result;
  }
  const c = raw as InboundCase;
  const expect = c.expect ?? {};
  const channel = pickChannel(manifest, c.inbound.channel, result);
  if (channel === null) return result;
  result.channel = channel.id;
  if (expect.unverified !== undefined && c.verify === undefined) result.problems.push('expect.unverified needs "verify": { "secret": ... } (without it the harness does not check the webhook)');
  if (expect.unverified !== undefined && (expect.messages !== undefined || expect.respond !== undefined || expect.error !== undefined)) {
    result.problems.push('expect.unverified: a refused webhook never reaches the plugin, so give no messages, respond or error with it');
  }
  if (c.inbound.body === undefined) result.problems.push('inbound.body: required (the webhook body, a string or any JSON value)');
  if (result.problems.length > 0) return result;

  const bodyText = typeof c.inbound.body === 'string' ? c.inbound.body : JSON.stringify(c.inbound.body);
  const body = Buffer.from(bodyText, 'utf8');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.inbound.headers ?? {})) headers[k.toLowerCase()] = v;

  // The host's webhook check, before the plugin sees a byte.
  if (c.verify === undefined) result.verified = 'skipped';
  else {
    const secret = Buffer.from(c.verify.secret, 'utf8');
    const tsHeader = channel.verify.scheme === 'slack_v0' ? headers['x-slack-request-timestamp'] : channel.verify.scheme === 'hmac_sha256' ? headers['x-tyrum-timestamp'] : undefined;
    const nowMs = c.verify.now !== undefined ? c.verify.now * 1000 : !c.verify.sign && tsHeader !== undefined && /^[0-9]{1,12}$/.test(tsHeader) ? Number(tsHeader) * 1000 : Date.now();
    if (c.verify.sign) {
      if (channel.verify.scheme === 'hmac_sha256') Object.assign(headers, signHmac(secret, body, nowMs));
      else if (channel.verify.scheme === 'slack_v0') Object.assign(headers, signSlack(secret, body, nowMs));
      else headers['x-telegram-bot-api-secret-token'] = c.verify.secret;
    }
    const v = verifyWebhook(channel.verify.scheme, headers, body, secret, nowMs, channel.verify.replay_window_s ?? REPLAY_WINDOW_DEFAULT_S);
    result.verified = v.ok ? 'ok' : v.reason;
    if (!v.ok) {
      const want = expect.unverified;
      if (want === undefined) result.problems.push(`the webhook does not verify (${channel.verify.scheme}: ${v.reason}); the host would refuse it with TYRUM_ERR_CHANNEL_UNVERIFIED before the plugin sees it`);
      else if (want !== true && want !== v.reason) result.problems.push(`expected the webhook to be refused as ${want}, but it was refused as ${v.reason}`);
      result.ok = result.problems.length === 0;
      return result;
    }
    if (expect.unverified !== undefined) {
      result.problems.push(`expected the webhook to be refused (${channel.verify.scheme}), but it verifies`);
      return result;
    }
  }

  // Only the headers the manifest lists, never a signature header, as the host passes them.
  const shown = new Set((channel.inbound.headers ?? []).filter((h) => !SIGNATURE_HEADERS.has(h)));
  const input = { headers: Object.fromEntries(Object.entries(headers).filter(([k]) => shown.has(k))), body: bodyText, instance: c.inbound.instance ?? TEST_INSTANCE };
  result.shown_headers = Object.keys(input.headers).sort();
  const call = await callChannelExport(src, pool, `${manifest.id}.${keySuffix}`, channel.inbound.export, input, result);
  let error = call.error;
  let normalised: InboundResult | null = null;
  if (error === null) {
    try {
      normalised = checkInboundResult(call.answer);
      result.inbound = normalised;
    } catch (e) {
      error = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', String(e));
    }
  }
  if (error) result.error = { code: error.code, message: error.message };

  const problems: string[] = [];
  const ev = errorVerdict(error, expect.error, `the inbound export answered ${preview(normalised, 300)}`);
  if (ev) problems.push(ev);
  if (normalised !== null && expect.error === undefined) {
    if (expect.messages !== undefined) {
      const d = partialDifference(expect.messages, normalised.messages, '/messages');
      if (d) problems.push(`inbound messages differ at ${d}\n  got ${preview(normalised.messages, 1000)}`);
    }
    if (expect.respond !== undefined) {
      const d = partialDifference(expect.respond, normalised.respond, '/respond');
      if (d) problems.push(`inbound respond differs at ${d}`);
    }
  }
  result.problems = problems;
  result.ok = problems.length === 0;
  return result;
}

async function runOutboundCase(src: PluginSource, pool: SandboxPool, file: string, index: number, raw: object, keySuffix: string): Promise<CaseResult> {
  const manifest = src.manifest;
  const result = channelResult(file, index, raw, 'outbound');
  const issues = validate(OutboundCase, raw);
  if (issues.length > 0) {
    result.problems.push(`not a valid outbound case: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    return result;
  }
  const c = raw as OutboundCase;
  const expect = c.expect ?? {};
  const channel = pickChannel(manifest, c.outbound.channel, result);
  if (channel === null) return result;
  result.channel = channel.id;
  const credential = c.outbound.credential === undefined ? TEST_CREDENTIAL : c.outbound.credential;
  if (credential !== null && Buffer.byteLength(credential) < MIN_SECRET_BYTES) result.problems.push(`outbound.credential: a fake credential needs at least ${MIN_SECRET_BYTES} bytes (shorter values cannot be redacted reliably)`);
  const apiBase = c.outbound.api_base ?? channel.outbound.api_base;
  if (!URL.canParse(apiBase) || !/^https?:$/.test(new URL(apiBase).protocol)) result.problems.push(`outbound.api_base: ${JSON.stringify(apiBase)} is not an http(s) URL`);
  if (expect.error !== undefined && (expect.requests !== undefined || expect.count !== undefined)) result.problems.push('give expect.error or expect.requests/count, not both');
  if (result.problems.length > 0) return result;

  const input: OutboundInput = { text: c.outbound.text, chat_id: c.outbound.chat_id, thread_id: c.outbound.thread_id ?? null, text_limit: c.outbound.text_limit ?? channel.text_limit ?? DEFAULT_TEXT_LIMIT };
  const call = await callChannelExport(src, pool, `${manifest.id}.${keySuffix}`, channel.outbound.export, input, result);
  let error = call.error;
  let sent: SentRequest[] | null = null;
  if (error === null) {
    try {
      // The host's checks (destination, path, templates), then the URL and headers it would send.
      sent = checkOutboundResult(channel, input, call.answer).map((r) => ({
        method: r.method,
        path: r.path,
        url: outboundUrl(apiBase, r.path, credential).href,
        headers: outboundHeaders(r.headers, credential),
        body: r.body,
      }));
      result.outbound = sent;
      result.requests = sent.map((r) => ({ method: r.method, url: r.url, status: null }));
    } catch (e) {
      error = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', String(e));
    }
  }
  if (error) result.error = { code: error.code, message: error.message };

  const problems: string[] = [];
  const ev = errorVerdict(error, expect.error, `the outbound export answered ${sent?.length ?? 0} request${sent?.length === 1 ? '' : 's'} that pass the host's checks`);
  if (ev) problems.push(ev);
  if (sent !== null && expect.error === undefined) {
    const want = expect.requests ?? [];
    if (expect.count !== undefined && sent.length !== expect.count) problems.push(`outbound: expected ${expect.count} request${expect.count === 1 ? '' : 's'}, got ${sent.length}`);
    else if (expect.count === undefined && expect.requests !== undefined && sent.length !== want.length) problems.push(`outbound: expected ${want.length} request${want.length === 1 ? '' : 's'}, got ${sent.length}`);
    want.forEach((w, i) => {
      const got = sent[i];
      if (got === undefined) return;
      const label = `outbound request ${i + 1} (${got.method} ${got.path})`;
      if (w.method !== undefined && w.method.toUpperCase() !== got.method) problems.push(`${label}: method expected ${w.method.toUpperCase()}, got ${got.method}`);
      if (w.path !== undefined && w.path !== got.path) problems.push(`${label}: path expected ${JSON.stringify(w.path)}, got ${JSON.stringify(got.path)}`);
      if (w.url !== undefined) {
        const url = URL.canParse(w.url) ? new URL(w.url).href : w.url;
        if (url !== got.url) problems.push(`${label}: url expected ${url}, got ${got.url}`);
      }
      for (const [name, value] of Object.entries(w.headers ?? {})) {
        const expected = credential === null ? value : value.split(CREDENTIAL_PLACEHOLDER).join(credential);
        const actual = got.headers[name.toLowerCase()];
        if (actual !== expected) problems.push(`${label}: header ${name.toLowerCase()} expected ${JSON.stringify(expected)}, got ${actual === undefined ? 'no such header' : JSON.stringify(actual)}`);
      }
      if (w.body !== undefined) {
        const d = partialDifference(w.body, got.body, '/body');
        if (d) problems.push(`${label}: body differs at ${d}`);
      }
    });
  }
  result.problems = problems;
  result.ok = problems.length === 0;
  return result;
}

// --- scripted HTTP: the gateway's egress handler, answered from the recordings ---

/**
 * The plugin's `http_request` goes through the gateway's own egress handler (core/egress), so
 * every check is the gateway's: granted origin and method, templates only in header values, a
 * secret only to an origin both its grant and its binding name (here the binding is the grant,
 * as an operator would set it), redirects re-checked, request limits, redacted responses. Only
 * the network is replaced: a hop that passes is answered from the case's recordings (no DNS, no
 * address check), and its headers are compared with `expect_headers`.
 */
class ScriptedHttp {
  readonly problems: string[] = [];
  readonly requests: CaseResult['requests'] = [];
  readonly #used = new Set<number>();
  readonly #egress: EgressHandler;

  constructor(
    private readonly recordings: readonly HttpRecording[],
    rights: EffectiveRights,
    private readonly secrets: Readonly<Record<string, string>>,
    private readonly redactor: Redactor,
  ) {
    this.#egress = createEgressHandler({
      rightsFor: () => rights,
      secrets: {
        has: (name) => Object.hasOwn(secrets, name),
        destinations: (name) => rights.secrets.find((s) => s.name === name)?.destinations ?? [],
        reveal: (name) => {
          if (!Object.hasOwn(secrets, name)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no secret ${name}`);
          return Buffer.from(secrets[name]!, 'utf8');
        },
      },
      redactor,
      transport: (hop) => this.#answer(hop),
    });
  }

  readonly handler: EgressHandler = async (req) => {
    try {
      return await this.#egress(req);
    } catch (e) {
      if (isTyrumError(e) && e.details?.['egress'] === 'secret_missing') {
        throw sandboxError('capability_denied', `${e.message} (give the test case a fake value in "secrets")`, e.details);
      }
      throw e;
    }
  };

  /** A checked hop: the matching recording's answer; no match fails the case. */
  async #answer(hop: EgressHop): Promise<EgressReply> {
    const shown = this.redactor.redactText(hop.url.href);
    const i = this.#match(hop.method, hop.url.href);
    if (i < 0) {
      const msg = `unexpected request ${hop.method} ${shown}`;
      this.problems.push(msg);
      this.requests.push({ method: hop.method, url: shown, status: null });
      throw sandboxError('host_error', msg, { host: hop.url.hostname });
    }
    const rec = this.recordings[i]!;
    this.#checkHeaders(i, rec, hop.headers);
    this.requests.push({ method: hop.method, url: shown, status: rec.status });
    const headers = Object.fromEntries(Object.entries(rec.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const location = headers['location'];
    if (REDIRECT_STATUSES.has(rec.status) && typeof location === 'string' && location !== '') {
      return { status: rec.status, headers, location, body: new Uint8Array(0), bytesIn: 0 };
    }
    const body = rec.body === undefined ? new Uint8Array(0) : typeof rec.body === 'string' ? Buffer.from(rec.body, 'utf8') : Buffer.from(JSON.stringify(rec.body), 'utf8');
    if (body.byteLength > hop.maxResponseBytes) {
      throw sandboxError('budget_exceeded', `egress response from ${hop.url.hostname} exceeds the remaining ${hop.maxResponseBytes}-byte egress budget`, { budget: 'egress_bytes', host: hop.url.hostname });
    }
    return { status: rec.status, headers, location: null, body, bytesIn: body.byteLength };
  }

  /** Recordings answer in order: the first unused one that matches, else the last one that matches. */
  #match(method: string, href: string): number {
    let last = -1;
    for (let i = 0; i < this.recordings.length; i++) {
      const r = this.recordings[i]!;
      if ((r.method ?? 'GET').toUpperCase() !== method) continue;
      let u: URL;
      try {
        u = new URL(r.url);
      } catch {
        continue;
      }
      u.hash = '';
      if (u.href !== href) continue;
      if (!this.#used.has(i)) {
        this.#used.add(i);
        return i;
      }
      last = i;
    }
    return last;
  }

  /** `expect_headers`: each named header as sent, after the host's secret substitution. */
  #checkHeaders(i: number, rec: HttpRecording, sent: Record<string, string>): void {
    for (const [name, template] of Object.entries(rec.expect_headers ?? {})) {
      const parsed = parseTemplate(template);
      if (!parsed.ok) {
        this.problems.push(`http[${i}].expect_headers.${name}: ${parsed.problem}`);
        continue;
      }
      const missing = parsed.secrets.find((s) => !Object.hasOwn(this.secrets, s));
      if (missing !== undefined) {
        this.problems.push(`http[${i}].expect_headers.${name}: names secret ${missing}, which has no fake value in "secrets"`);
        continue;
      }
      // A secret's value goes on the wire as its UTF-8 bytes, which egress writes as a Latin-1 header string.
      const expected = parsed.parts.map((p) => ('text' in p ? p.text : Buffer.from(this.secrets[p.secret]!, 'utf8').toString('latin1'))).join('');
      const actual = sent[name.toLowerCase()];
      if (actual !== expected) {
        const show = (v: string | undefined) => (v === undefined ? 'no such header' : JSON.stringify(this.redactor.redactText(v)));
        this.problems.push(`request ${i + 1} (${rec.method ?? 'GET'} ${this.redactor.redactText(rec.url)}): header ${name.toLowerCase()} expected ${show(expected)}, sent ${show(actual)}`);
      }
    }
  }
}

// --- printing ---

const fmt = (used: number | null, limit: number): string => `${used === null ? '?' : used}/${limit}`;

/** One line of budget use against the limits. */
export function usageLine(u: CaseUsage | null, l: HarnessLimits): string {
  if (u === null) return 'not run';
  return [
    `wall ${fmt(u.wall_ms, l.wall_ms)} ms`,
    `mem ${fmt(u.mem_pages_peak, l.memory_pages)} pages`,
    `host calls ${fmt(u.host_calls, l.host_calls)}`,
    `alloc ${fmt(u.alloc_bytes, l.alloc_bytes)} B`,
    `egress ${fmt(u.egress_bytes, l.egress_bytes)} B`,
  ].join(' · ');
}

/** The human report: a header, one line per case (plus why it failed), and the summary line. */
export function formatReport(r: HarnessReport): string[] {
  const l = r.limits;
  const lines = [
    `${r.plugin.id} ${r.plugin.version}: ${r.cases.length} case${r.cases.length === 1 ? '' : 's'} in the gateway's sandbox`,
    `limits per call (what the gateway enforces once everything requested is granted): wall ${l.wall_ms} ms · memory ${l.memory_pages} pages · host calls ${l.host_calls} · alloc ${l.alloc_bytes} B · egress ${l.egress_bytes} B · output ${l.output_bytes} B`,
  ];
  for (const c of r.cases) {
    const what = c.kind === 'tool' ? c.tool : `${c.kind}${c.channel !== undefined ? ` ${c.channel}` : ''}`;
    const where = c.index > 0 ? ` [${c.file} #${c.index} ${what}]` : '';
    const refused = c.kind === 'inbound' && c.verified !== undefined && c.verified !== 'ok' && c.verified !== 'skipped';
    lines.push(`${c.ok ? '✓' : '✗'} ${c.name}${where}  ${refused ? `webhook refused by the host (${c.verified}), plugin not called` : usageLine(c.usage, l)}`);
    for (const p of c.problems) lines.push(...p.split('\n').map((x) => `    ${x}`));
    if (!c.ok) for (const log of c.logs.slice(0, 20)) lines.push(`    log ${log.level}: ${log.message}`);
  }
  lines.push(`${r.passed} passed, ${r.failed} failed`);
  return lines;
}

