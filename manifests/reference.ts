/**
 * docs/manifest.md, generated from the PluginManifest contract by `npm run gen`: a short
 * introduction written here, then one row per field (type, required or optional, constraints,
 * description), so the reference cannot drift from the schema the gateway enforces.
 */
import { HOST_API_VERSION, PluginManifest, RISK_FLAGS } from '../schemas/index.js';
import { RISK_IMPLIED_BY, SECRET_FIELD_MARKER } from './manifest.js';
import { MANIFEST_FILE, MANIFEST_MAX_BYTES, SCHEMA_MAX_BYTES, SCHEMA_MAX_DEPTH, SCHEMA_MAX_EXPANSION, SCHEMA_MAX_PATTERN_LENGTH, SCHEMA_MAX_UNIQUE_ITEMS, WASM_MAX_BYTES } from './limits.js';

/** The example shown in the reference (a test checks it passes every manifest rule). */
export const EXAMPLE_MANIFEST = {
  manifest_version: 1,
  id: 'weather',
  name: 'Weather',
  version: '1.2.0',
  description: 'Current conditions and forecasts from api.weather.example.',
  publisher: 'Example Corp',
  license: 'Apache-2.0',
  engines: { tyrum: '^1.0.0' },
  wasm: { path: 'build/weather.wasm', sha256: '<sha256 of build/weather.wasm, 64 lowercase hex digits>' },
  contributes: {
    tools: [
      {
        id: 'forecast',
        export: 'forecast',
        description: 'Forecast for a city, up to 7 days ahead.',
        input_schema: {
          type: 'object',
          properties: { city: { type: 'string', minLength: 1, maxLength: 100 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
          required: ['city'],
          additionalProperties: false,
        },
        output_schema: { type: 'object', properties: { summary: { type: 'string' } }, required: ['summary'] },
        effect: 'read_only',
      },
    ],
  },
  requests: {
    egress: [{ host: 'api.weather.example', methods: ['GET'] }],
    secrets: [{ name: 'WEATHER_API_KEY', destinations: ['api.weather.example'], purpose: 'API key sent as the X-Api-Key header' }],
    time: { timeout_ms: 10000 },
  },
  risk: ['network', 'secrets'],
  config_schema: {
    type: 'object',
    properties: {
      units: { type: 'string', enum: ['metric', 'imperial'], default: 'metric' },
      api_key: { type: 'string', [SECRET_FIELD_MARKER]: true, description: 'Name of the secret handle holding the API key.' },
    },
    required: ['api_key'],
  },
};

type Schema = Record<string, unknown>;

/** Descriptions for fields whose contract has none (kept here so every row explains itself). */
const FIELD_NOTES: Record<string, string> = {
  $schema: 'URI of a JSON Schema for editors; ignored by the gateway.',
  manifest_version: 'Version of this manifest format.',
  name: 'Human-readable name.',
  description: 'What the plugin does, shown to operators.',
  publisher: 'Who publishes the plugin.',
  license: 'SPDX license expression.',
  homepage: 'Where to read more about the plugin.',
  engines: 'Compatibility requirements.',
  wasm: 'The WebAssembly module implementing the plugin.',
  'wasm.sha256': 'sha256 of the module file, lowercase hex; the module is refused when it differs.',
  contributes: 'What the plugin adds to the gateway.',
  'contributes.tools': 'Tools the plugin implements.',
  'contributes.tools[].description': 'What the tool does, shown to callers and models.',
  'contributes.tools[].input': 'How the JSON arguments reach the export (default json: as JSON text); see "Input and output encodings".',
  'contributes.tools[].output': 'How the export\'s output becomes the result (default json: parsed as JSON); see "Input and output encodings".',
  'contributes.tools[].effect': 'Whether a call changes state outside the gateway (state_changing implies the risk flag of that name).',
  'contributes.tools[].postcondition': 'A check on every output of the tool: exactly one of exists, equals or matches at path. A call whose output fails it, or cannot be checked, is never reported as success.',
  'contributes.tools[].postcondition.path': 'RFC 6901 JSON pointer into the output ("" is the whole output).',
  'contributes.tools[].postcondition.exists': 'The value at path must exist.',
  'contributes.tools[].postcondition.equals': 'The value at path must equal this JSON value (canonical comparison).',
  'contributes.tools[].postcondition.matches': 'The string at path must match this regular expression (screened like schema patterns).',
  requests: "The plugin's half of the two-key model: what it asks for.",
  'requests.egress': 'Outbound HTTP destinations.',
  'requests.secrets': 'Secret handles the plugin may name; the host injects their values into requests to the listed destinations.',
  'requests.secrets[].purpose': 'Why the plugin needs the secret, shown to the operator.',
  'requests.kv': 'Per-plugin key-value storage in the gateway store.',
  'requests.kv.quota_bytes': 'Storage quota in bytes.',
  'requests.memory': 'Linear memory above the default of 256 pages (16 MiB).',
  'requests.time': 'Call time above the default of 5000 ms.',
  risk: 'Risk flags the plugin declares; see "Risk flags".',
  config_schema: 'JSON Schema of the plugin configuration; see above.',
};

/** Rules enforced beyond the contract, shown with the field's constraints. */
const FIELD_RULES: Record<string, string> = {
  version: 'canonical semantic version (e.g. 1.2.3)',
  'engines.tyrum': `valid semver range including host API ${HOST_API_VERSION}`,
  'wasm.path': 'no empty, `.` or `..` segments; no symbolic links',
  'contributes.tools[].id': 'unique in the plugin',
  'contributes.tools[].export': 'a function the module exports',
  'contributes.tools[].input_schema': '`"type": "object"`; checked as above',
  'contributes.tools[].output_schema': 'checked as above',
  'contributes.tools[].input.field': 'text and bytes only, and then required: a required `"type": "string"` property of `input_schema`',
  'contributes.tools[].output.field': 'text and bytes only, and then required: a `"type": "string"` property of `output_schema`',
  'requests.egress[].host': 'one rule per scheme, host and port',
  'requests.secrets[].name': 'unique in the list',
  config_schema: '`"type": "object"`; checked as above',
};

/** One field of the manifest as the reference lists it. */
export interface Row {
  path: string;
  type: string;
  required: boolean;
  constraints: string[];
  description: string;
}

const code = (s: unknown) => '`' + String(s).replace(/\|/g, '\\|') + '`';

function enumValues(s: Schema): unknown[] | null {
  const any = s.anyOf;
  if (Array.isArray(any) && any.every((b) => typeof b === 'object' && b !== null && 'const' in b)) return any.map((b) => (b as Schema).const);
  return null;
}

function typeOf(s: Schema): string {
  const values = enumValues(s);
  if (values) return 'one of ' + values.map(code).join(', ');
  if ('const' in s) return `${code(JSON.stringify(s.const))} (constant)`;
  if (s.type === 'array') {
    const items = (s.items ?? {}) as Schema;
    return `array of ${items.type === 'object' ? 'objects' : typeOf(items)}`;
  }
  if (s.type === 'object' && s.patternProperties !== undefined) return 'object (a JSON Schema)';
  if (typeof s.type === 'string') return s.type;
  return 'any JSON value';
}

function constraintsOf(s: Schema): string[] {
  const out: string[] = [];
  if (s.pattern !== undefined) out.push(`pattern ${code(s.pattern)}`);
  if (s.minLength !== undefined) out.push(`min length ${String(s.minLength)}`);
  if (s.maxLength !== undefined) out.push(`max length ${String(s.maxLength)}`);
  if (s.minimum !== undefined) out.push(`min ${String(s.minimum)}`);
  if (s.maximum !== undefined) out.push(`max ${String(s.maximum)}`);
  if (s.minItems !== undefined) out.push(`min items ${String(s.minItems)}`);
  if (s.maxItems !== undefined) out.push(`max items ${String(s.maxItems)}`);
  if (s.uniqueItems === true) out.push('unique items');
  if (s.type === 'array') {
    const items = (s.items ?? {}) as Schema;
    if (items.type !== 'object') out.push(...constraintsOf(items).map((c) => `each: ${c}`));
  }
  if (s.additionalProperties === false && s.type === 'object') out.push('no other keys');
  return out;
}

function rows(schema: Schema, prefix: string, out: Row[]): Row[] {
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema.required ?? []) as string[]);
  for (const [name, s] of Object.entries(props)) {
    const path = prefix + name;
    const desc = typeof s.description === 'string' ? s.description : (s.type === 'array' && typeof (s.items as Schema | undefined)?.description === 'string' ? ((s.items as Schema).description as string) : '');
    const rule = FIELD_RULES[path];
    out.push({ path, type: typeOf(s), required: required.has(name), constraints: [...constraintsOf(s), ...(rule ? [rule] : [])], description: desc || (FIELD_NOTES[path] ?? '') });
    if (s.type === 'object' && s.properties !== undefined) rows(s, path + '.', out);
    if (s.type === 'array' && (s.items as Schema | undefined)?.type === 'object' && (s.items as Schema).properties !== undefined) rows(s.items as Schema, path + '[].', out);
  }
  return out;
}

const RISK_MEANING: Record<string, string> = {
  network: 'the plugin makes outbound HTTP requests',
  secrets: 'the host injects secret values into the plugin\'s requests',
  state_changing: 'a tool changes state outside the gateway',
  destructive: 'a tool can delete or overwrite data (declared by the author; never implied)',
  storage: 'the plugin keeps data in the gateway\'s key-value store',
};

function impliedText(by: string | null): string {
  if (by === null) return 'never implied (opt-in)';
  return by.startsWith('requests.') ? code(by) : by;
}

/** One row per manifest field, as listed in the reference (exported for tests). */
export function manifestFieldRows(): Row[] {
  return rows(JSON.parse(JSON.stringify(PluginManifest)) as Schema, '', []);
}

/** The text of docs/manifest.md. */
export function manifestReferenceDoc(): string {
  const lines = [
    '# Plugin manifest reference (generated)',
    '',
    'Generated by `npm run gen` from `schemas/src/manifest.ts` and `manifests/reference.ts`; do not edit.',
    '',
    `Every plugin ships a \`${MANIFEST_FILE}\` at its root: what the plugin is, which WebAssembly module`,
    'implements it (pinned by sha256), the tools it contributes, what it asks the gateway for, and',
    'which risks that carries. The gateway refuses a manifest with an unknown key, a bad semantic',
    'version, a host-API range it does not satisfy (this gateway provides host API ' + HOST_API_VERSION + '), a module',
    'whose digest differs from `wasm.sha256`, or a tool `export` the module does not have; each',
    'refusal names the field. A plugin is installed from its directory or from a `.tgz` holding the',
    `manifest at the root and the module at \`wasm.path\`. Limits: manifest ${MANIFEST_MAX_BYTES / 1024} KiB, module ${WASM_MAX_BYTES / 1024 / 1024} MiB.`,
    '',
    '## Example',
    '',
    '```json',
    JSON.stringify(EXAMPLE_MANIFEST, null, 2),
    '```',
    '',
    '## Two keys',
    '',
    '`requests` is the plugin\'s half: egress destinations, secret handles (each bound to the hosts its',
    'value may be sent to; a requested host means https on port 443 unless the operator\'s grant pins it',
    'to an origin such as `--secret NAME=http://127.0.0.1:8080`), key-value storage, memory and time.',
    'The operator grants the other half (`tyrum plugin grant`), and the plugin gets only the',
    'intersection of the two: a grant can narrow a request but never widen it, and a request nobody',
    'granted gives nothing.',
    '',
    '## Risk flags',
    '',
    'A plugin stays disabled until the operator accepts each risk flag it declares. Some flags are',
    'implied by what the manifest requests, and a manifest that does not declare them is refused:',
    '',
    '| flag | meaning | must be declared when the manifest has |',
    '|---|---|---|',
    ...RISK_FLAGS.map((f) => `| \`${f}\` | ${RISK_MEANING[f] ?? ''} | ${impliedText(RISK_IMPLIED_BY[f])} |`),
    '',
    '## JSON Schemas in a manifest',
    '',
    '`input_schema`, `output_schema` and `config_schema` are JSON Schema draft-07, checked when the',
    `plugin is read: at most ${SCHEMA_MAX_BYTES / 1024} KiB serialized and ${SCHEMA_MAX_DEPTH} levels deep; \`$ref\` only to \`#/...\` inside the`,
    `same schema; no \`$id\` or \`$async\`; every \`pattern\` at most ${SCHEMA_MAX_PATTERN_LENGTH} characters, without backreferences or`,
    'constructs that backtrack catastrophically (a repeated group containing a variable repeat such as',
    '`(a+)+`, a repeated alternation with overlapping branches such as `(a|ab)*`); at most',
    `${SCHEMA_MAX_EXPANSION} subschemas applied to one value through \`$ref\` and combinators, and no \`$ref\` cycle that does`,
    `not descend into the data; \`uniqueItems\` only on scalar items or with \`maxItems\` of at most ${SCHEMA_MAX_UNIQUE_ITEMS}. \`format\` is`,
    'an annotation, not checked. A tool\'s `input_schema` must have `"type": "object"`.',
    '',
    `\`config_schema\` must have \`"type": "object"\`. Unknown top-level config keys are refused unless the schema sets \`additionalProperties\` or \`patternProperties\` itself. A property marked \`"${SECRET_FIELD_MARKER}": true\` (reached through \`properties\` only) must have \`"type": "string"\`: it holds the *name* of a secret handle the plugin requests and the operator granted, never the value.`,
    '',
    '## Input and output encodings',
    '',
    'By default a tool\'s export receives its arguments as JSON text and returns its result as JSON text.',
    'Many published Extism modules read or write raw bytes or text instead; a tool declares that with',
    '`input` and `output`, each `{ "encoding": "json" | "text" | "bytes", "field": "<property>" }`:',
    '',
    '- `json` (the default, no `field`): input is the arguments object as UTF-8 JSON; output is parsed',
    '  as JSON. An export that succeeds without setting any output returns the result `null`, which the',
    '  output schema must accept (e.g. `{}` or `{ "type": "null" }`); otherwise the call fails as output',
    '  that does not match its output schema.',
    '- `text`: the arguments are validated against `input_schema` as usual, then only the string',
    '  `field` (a required `"type": "string"` property of `input_schema`) is passed, as raw UTF-8. Output:',
    '  the raw bytes, which must be valid UTF-8, become `{ "<field>": "<text>" }` (no output: `""`).',
    '- `bytes`: as `text`, but the JSON string holds base64 (RFC 4648, padded): the argument is decoded',
    '  before the call (invalid base64 is refused as an invalid request), and the output is encoded.',
    '',
    'The wrapped output is then checked against `output_schema` (`field` must be a `"type": "string"`',
    'property there). A module that behaves like Extism\'s `count_vowels` example (raw text in, JSON out):',
    '',
    '```json',
    JSON.stringify(
      {
        id: 'count_vowels',
        export: 'count_vowels',
        description: 'Counts the vowels in a text.',
        input: { encoding: 'text', field: 'text' },
        input_schema: { type: 'object', properties: { text: { type: 'string', maxLength: 65536 } }, required: ['text'], additionalProperties: false },
        output_schema: { type: 'object', properties: { count: { type: 'integer' }, total: { type: 'integer' }, vowels: { type: 'string' } }, required: ['count'] },
        effect: 'read_only',
      },
      null,
      2,
    ),
    '```',
    '',
    'Called with `{ "text": "Hello, World!" }`, the export reads the 13 bytes `Hello, World!` and the',
    'result is its JSON output, `{ "count": 3, "total": 3, "vowels": "aeiouAEIOU" }`.',
    '',
    '## Fields',
    '',
    '| field | type | required | constraints | description |',
    '|---|---|---|---|---|',
    ...manifestFieldRows().map(
      (r) => `| ${code(r.path)} | ${r.type} | ${r.required ? 'required' : 'optional'} | ${r.constraints.join('; ')} | ${r.description.replace(/\|/g, '\\|')} |`,
    ),
  ];
  return lines.join('\n') + '\n';
}
