/**
 * `tyrum plugin new`: writes a working plugin into a new directory: a manifest (one read-only tool,
 * `hello`, with strict JSON Schemas, and a config schema with one defaulted field), the source in
 * AssemblyScript or C, a test file for `tyrum plugin test`, a README and build settings. With
 * `kind: 'channel'` (AssemblyScript only): a chat-channel adapter instead (no tools, one channel
 * with inbound and outbound exports for a simple JSON webhook platform), with inbound and outbound
 * test cases; templates/channel/ overlays templates/assemblyscript/.
 *
 * The result stands alone: nothing in it refers to a path outside its directory (the AssemblyScript
 * JSON runtime is copied from the PDK, sdk/pdk/assemblyscript/json.ts, at scaffold time; the I/O
 * helpers are a copy of plugins/_shared/assembly/io.ts; the C header is a minimal one of our own), and it builds with `tyrum plugin build` using only npm packages (AssemblyScript) or Debian's
 * clang and lld (C).
 *
 * Template files live in sdk/author/templates/ (suffixed `.tmpl` so neither tsc nor eslint reads
 * them as project sources); `{{key}}` placeholders are replaced, and the manifest is generated here.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TyrumError } from '../../core/errors/index.js';
import { MANIFEST_FILE } from '../../manifests/limits.js';
import { packageInfo } from '../../core/util/package-info.js';
import { PDK_ASSEMBLYSCRIPT_DIR } from './types.js';

/** Languages `tyrum plugin new` can scaffold. */
export const PLUGIN_LANGS = ['assemblyscript', 'c'] as const;
export type PluginLang = (typeof PLUGIN_LANGS)[number];

/** What `tyrum plugin new` can scaffold: a tool plugin (the default) or a chat-channel adapter. */
export const PLUGIN_KINDS = ['tool', 'channel'] as const;
export type PluginKind = (typeof PLUGIN_KINDS)[number];
/** Languages each kind has templates for. */
export const KIND_LANGS: Readonly<Record<PluginKind, readonly PluginLang[]>> = { tool: PLUGIN_LANGS, channel: ['assemblyscript'] };

/** The manifest's id pattern (schemas/src/manifest.ts): the directory name is the plugin id. */
export const PLUGIN_ID_PATTERN = /^[a-z][a-z0-9-]{0,62}[a-z0-9]$/;

/** The placeholder digest a scaffolded manifest carries until `tyrum plugin build` fills it. */
export const PLACEHOLDER_SHA256 = '0'.repeat(64);

/** Where the module goes; `tyrum plugin build` writes it there. */
export const SCAFFOLD_WASM_PATH = 'build/plugin.wasm';

export interface ScaffoldOptions {
  /** The plugin id, also the new directory's name. */
  name: string;
  lang?: PluginLang;
  /** A tool plugin (default) or a chat-channel adapter (AssemblyScript only). */
  kind?: PluginKind;
  /** The directory to create the plugin in (default: the current directory). */
  parent?: string;
}

export interface ScaffoldResult {
  id: string;
  lang: PluginLang;
  kind: PluginKind;
  /** The new plugin directory (absolute). */
  dir: string;
  /** The files written, relative to `dir`, sorted. */
  files: string[];
}

/** Why `name` cannot be a plugin id, or null. */
export function pluginIdProblem(name: string): string | null {
  if (PLUGIN_ID_PATTERN.test(name)) return null;
  return `invalid plugin name ${JSON.stringify(name)}: it becomes the manifest id, which must match ${PLUGIN_ID_PATTERN.source} (2-64 characters: lowercase letters, digits and "-", starting with a letter, not ending with "-"), e.g. "hello-world"`;
}

/** The templates folder: beside this module in the source tree, or the source tree's when running from dist/. */
export function templatesDir(): string {
  const candidates = [new URL('./templates/', import.meta.url), new URL('../../../sdk/author/templates/', import.meta.url)];
  for (const c of candidates) {
    const dir = fileURLToPath(c);
    if (existsSync(join(dir, 'common'))) return dir;
  }
  throw new TyrumError('TYRUM_ERR_INTERNAL', `plugin templates not found (looked in ${candidates.map((c) => fileURLToPath(c)).join(', ')})`);
}

/** The versions of the AssemblyScript toolchain Tyrum itself builds with (what the scaffold pins). */
export function asToolchainVersions(): { assemblyscript: string; asPdk: string } {
  const require = createRequire(import.meta.url);
  // @extism/as-pdk has no "exports" map, so its package.json resolves; assemblyscript sits beside it.
  const pdkPackage = require.resolve('@extism/as-pdk/package.json');
  const nodeModules = dirname(dirname(dirname(pdkPackage)));
  const version = (file: string) => (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  return { assemblyscript: version(join(nodeModules, 'assemblyscript', 'package.json')), asPdk: version(pdkPackage) };
}

/** The manifest of a new plugin: one read-only tool `hello`, a config schema with one defaulted field. */
export function scaffoldManifest(id: string): Record<string, unknown> {
  return {
    manifest_version: 1,
    id,
    name: id,
    version: '0.1.0',
    description: `Says hello. (Describe what ${id} does: operators read this before they grant it anything.)`,
    publisher: 'Your name',
    license: 'Apache-2.0',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: SCAFFOLD_WASM_PATH, sha256: PLACEHOLDER_SHA256 },
    contributes: {
      tools: [
        {
          id: 'hello',
          export: 'hello',
          description: 'Greet someone by name: {"name": "Ada"} -> {"greeting": "Hello, Ada!"}. The greeting word is configurable.',
          input_schema: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: {
              name: { type: 'string', minLength: 1, maxLength: 100, description: 'Who to greet (1 to 100 characters, not blank).' },
            },
          },
          output_schema: {
            type: 'object',
            additionalProperties: false,
            required: ['greeting'],
            properties: {
              greeting: { type: 'string' },
            },
          },
          effect: 'read_only',
        },
      ],
    },
    config_schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        greeting: { type: 'string', minLength: 1, maxLength: 50, default: 'Hello', description: 'The word to greet with.' },
      },
    },
  };
}

/** The channel scaffold's API base (an instance may name another). */
export const SCAFFOLD_CHANNEL_API_BASE = 'https://chat.example.com/api';

/**
 * The manifest of a new channel adapter: no tools, one channel `chat` for a simple JSON webhook
 * platform (hmac_sha256 webhooks, `POST /messages` with a bearer token).
 */
export function scaffoldChannelManifest(id: string): Record<string, unknown> {
  return {
    manifest_version: 1,
    id,
    name: id,
    version: '0.1.0',
    description: `A chat-channel adapter for a JSON webhook platform. (Describe which platform ${id} connects: operators read this before they install it.)`,
    publisher: 'Your name',
    license: 'Apache-2.0',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: SCAFFOLD_WASM_PATH, sha256: PLACEHOLDER_SHA256 },
    contributes: {
      tools: [],
      channels: [
        {
          id: 'chat',
          description: 'Messages from signed JSON webhooks ({id, sender, chat, text}); replies as POST /messages with a bearer token, split at text_limit.',
          verify: { scheme: 'hmac_sha256' },
          inbound: { export: 'inbound', headers: ['content-type'] },
          outbound: {
            export: 'outbound',
            api_base: SCAFFOLD_CHANNEL_API_BASE,
            paths: ['/messages'],
            destination: { chat: '/chat_id', thread: '/thread_id' },
            receipt_pointer: '/id',
          },
          text_limit: 4000,
        },
      ],
    },
  };
}

/** Files a template folder holds: relative paths, sorted. */
function listTemplates(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    if (statSync(join(dir, rel)).isDirectory()) out.push(...listTemplates(dir, rel));
    else out.push(rel);
  }
  return out;
}

/** A template's output path: without `.tmpl`; `gitignore` becomes `.gitignore` (npm drops dotfiles named .gitignore). */
function outputPath(rel: string): string {
  const path = rel.replace(/\.tmpl$/, '');
  return path.replace(/(^|\/)gitignore$/, '$1.gitignore');
}

/** Replace the known `{{key}}` placeholders; anything else in braces (e.g. `{{secret:NAME}}`) stays. */
function fill(text: string, vars: Record<string, string>): string {
  return text.replace(/\{\{([a-z_]+)\}\}/g, (m, key: string) => vars[key] ?? m);
}

/**
 * Create `parent/name/` holding a new plugin. Refuses a bad name and an existing non-empty
 * directory (an existing empty one is used). Returns what was written.
 */
export function scaffoldPlugin(opts: ScaffoldOptions): ScaffoldResult {
  const id = opts.name;
  const problem = pluginIdProblem(id);
  if (problem !== null) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', problem);
  const lang = opts.lang ?? 'assemblyscript';
  if (!(PLUGIN_LANGS as readonly string[]).includes(lang)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown language ${JSON.stringify(lang)} (known: ${PLUGIN_LANGS.join(', ')})`);
  }
  const kind = opts.kind ?? 'tool';
  if (!(PLUGIN_KINDS as readonly string[]).includes(kind)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown kind ${JSON.stringify(kind)} (known: ${PLUGIN_KINDS.join(', ')})`);
  }
  if (!KIND_LANGS[kind].includes(lang)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${kind} templates exist for AssemblyScript only (--lang ${KIND_LANGS[kind].join('|')}); drop --lang ${lang}`);
  }
  const dir = resolve(opts.parent ?? '.', id);
  let created = false;
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new TyrumError('TYRUM_ERR_CONFLICT', `${dir} already exists and is not a directory`);
    if (readdirSync(dir).length > 0) throw new TyrumError('TYRUM_ERR_CONFLICT', `${dir} already exists and is not empty; choose another name or --dir, or remove it`);
  } else {
    mkdirSync(dir, { recursive: true });
    created = true;
  }

  const templates = templatesDir();
  const versions = asToolchainVersions();
  const common = join(templates, 'common');
  const vars: Record<string, string> = {
    id,
    assemblyscript_version: versions.assemblyscript,
    as_pdk_version: versions.asPdk,
  };
  vars.test_format = fill(readFileSync(join(common, 'test-format.md.tmpl'), 'utf8'), vars).trimEnd();

  const files = new Map<string, string>();
  const langDir = join(templates, lang);
  if (kind === 'channel') {
    // The AssemblyScript build settings and helpers, with the channel's own source, README and tests.
    files.set(MANIFEST_FILE, `${JSON.stringify(scaffoldChannelManifest(id), null, 2)}\n`);
    const channelDir = join(templates, 'channel');
    const own = new Set(listTemplates(channelDir));
    for (const rel of listTemplates(langDir)) if (!own.has(rel)) files.set(outputPath(rel), fill(readFileSync(join(langDir, rel), 'utf8'), vars));
    for (const rel of own) files.set(outputPath(rel), fill(readFileSync(join(channelDir, rel), 'utf8'), vars));
  } else {
    files.set(MANIFEST_FILE, `${JSON.stringify(scaffoldManifest(id), null, 2)}\n`);
    files.set('tests/hello.test.json', readFileSync(join(common, 'hello.test.json.tmpl'), 'utf8'));
    for (const rel of listTemplates(langDir)) files.set(outputPath(rel), fill(readFileSync(join(langDir, rel), 'utf8'), vars));
  }
  // The JSON runtime is the PDK's own file, copied as-is: one source, no template to drift.
  if (lang === 'assemblyscript') files.set('assembly/json.ts', readFileSync(join(packageInfo().root, PDK_ASSEMBLYSCRIPT_DIR, 'json.ts'), 'utf8'));

  try {
    for (const [rel, text] of files) {
      const file = join(dir, rel);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text, { flag: 'wx' });
    }
  } catch (e) {
    // Leave nothing half-written behind.
    if (created) rmSync(dir, { recursive: true, force: true });
    else for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    throw e;
  }
  return { id, lang, kind, dir, files: [...files.keys()].sort() };
}
