/**
 * `tyrum plugin new` and `tyrum plugin build`: the first two steps of a plugin author's loop
 * (sdk/author/scaffold.ts and sdk/author/build.ts). Both work on the file system only; no
 * gateway home is involved. Usage errors throw TYRUM_ERR_INVALID_ARGUMENT (exit 2 from main); a
 * failed build prints its cause (compiler output verbatim) on stderr and exits 1.
 */
import { relative } from 'node:path';
import { TyrumError } from '../../../core/errors/index.js';
import { PLUGIN_KINDS, PLUGIN_LANGS, scaffoldPlugin, type PluginKind, type PluginLang } from '../scaffold.js';
import { buildPlugin, CLANG_ENV, PluginBuildError } from '../build.js';
import { parse } from '../../../core/cli/args.js';
import type { Io } from '../../../core/cli/io.js';

export const NEW_USAGE = `usage: tyrum plugin new NAME [--kind tool|channel] [--lang assemblyscript|c] [--dir DIR]

Create DIR/NAME/ (DIR defaults to the current directory): a working plugin with one tool, "hello",
its manifest (tyrum.plugin.json), source, a test (tests/hello.test.json) and a README.
NAME is the plugin id: 2-64 characters, lowercase letters, digits and "-", starting with a letter.

  --kind tool             (default) a tool plugin
  --kind channel          a chat-channel adapter (AssemblyScript only): inbound and outbound exports
                          for a JSON webhook platform, with tests/inbound.test.json and
                          tests/outbound.test.json
  --lang assemblyscript   (default) AssemblyScript with @extism/as-pdk; needs nothing but Tyrum
  --lang c                C for wasm32; needs clang and lld (Debian: apt-get install clang lld)
  --dir DIR               where to create the plugin's folder`;

export const BUILD_USAGE = `usage: tyrum plugin build [DIR] [--json]

Compile the plugin in DIR (default: the current directory), check that every tool in the manifest
is exported by the module, that it imports only what the sandbox provides and that its memory fits
requests.memory.max_pages, then write the module's sha256 into tyrum.plugin.json and write
build/tyrum.plugin.json: both the plugin directory and build/ are then installable.

  AssemblyScript (asconfig.json): compiled with Tyrum's own AssemblyScript, target "release"
  C (src/*.c): clang --target=wasm32 -O2 -nostdlib -mbulk-memory (clang from $${CLANG_ENV} or PATH)
  --json   print the result as JSON`;

function asLang(v: string | undefined): PluginLang {
  if (v === undefined) return 'assemblyscript';
  if (!(PLUGIN_LANGS as readonly string[]).includes(v)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown --lang "${v}" (known: ${PLUGIN_LANGS.join(', ')})`);
  }
  return v as PluginLang;
}

function asKind(v: string | undefined, lang: string | undefined): PluginKind {
  if (v === undefined) return 'tool';
  if (!(PLUGIN_KINDS as readonly string[]).includes(v)) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown --kind "${v}" (known: ${PLUGIN_KINDS.join(', ')})`);
  }
  if (v === 'channel' && lang !== undefined && lang !== 'assemblyscript') {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `channel templates exist for AssemblyScript only: --kind channel takes no --lang ${lang} (omit --lang)\n${NEW_USAGE}`);
  }
  return v as PluginKind;
}

/** A path as shown to the user: relative to the current directory when inside it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
}

/** `tyrum plugin new NAME [--kind tool|channel] [--lang assemblyscript|c] [--dir DIR]` */
export async function pluginNew(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { kind: { type: 'string' }, lang: { type: 'string' }, dir: { type: 'string' } }, 1);
  if (values.help) {
    io.out(NEW_USAGE);
    return 0;
  }
  const name = positionals[0];
  if (name === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `missing the plugin NAME\n${NEW_USAGE}`);
  const lang = asLang(values.lang);
  const kind = asKind(values.kind, values.lang);
  const r = scaffoldPlugin({ name, lang, kind, ...(values.dir !== undefined ? { parent: values.dir } : {}) });
  const where = shown(r.dir);
  io.out(`Created ${r.id} (${r.lang === 'c' ? 'C' : 'AssemblyScript'}${r.kind === 'channel' ? ', channel adapter' : ''}) in ${where}/:`);
  for (const f of r.files) io.out(`  ${f}`);
  io.out(`next:\n  cd ${where}\n  tyrum plugin build\n  tyrum plugin test`);
  return 0;
}

/** `tyrum plugin build [DIR] [--json]` */
export async function pluginBuild(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, 1);
  if (values.help) {
    io.out(BUILD_USAGE);
    return 0;
  }
  const dir = positionals[0] ?? '.';
  try {
    const r = await buildPlugin(dir);
    if (r.warnings) io.err(`compiler output (${r.compiler}):\n${r.warnings}`);
    if (values.json) {
      io.out(JSON.stringify({ ok: true, ...r }));
      return 0;
    }
    const mem = r.memory;
    io.out(`Built ${r.id} ${r.version} with ${r.compiler} in ${(r.ms / 1000).toFixed(1)} s`);
    io.out(`  module:   ${r.wasmPath} ${r.wasmBytes.toLocaleString('en-US')} bytes, sha256 ${r.sha256}`);
    io.out(`  tools:    ${r.tools.length === 0 ? 'none' : r.tools.map((t) => (t.id === t.export ? t.id : `${t.id} (export ${t.export})`)).join(', ')}`);
    if (r.channels.length > 0) io.out(`  channels: ${r.channels.map((c) => `${c.id} (exports ${c.inbound}, ${c.outbound})`).join(', ')}`);
    io.out(
      `  memory:   initial ${mem.initialPages ?? 0} pages, maximum ${mem.declaredMaxPages === null ? `none (the gateway caps it at ${mem.capPages})` : mem.declaredMaxPages} of requests.memory.max_pages ${mem.capPages}`,
    );
    io.out(`  manifest: wasm.sha256 written to ${r.manifests.join(' and ')}${r.sourceManifestChanged ? '' : ' (unchanged: same module as before)'}`);
    const where = shown(r.dir);
    io.out(`next: tyrum plugin test${where === '.' ? '' : ` ${where}`}, then tyrum plugin pack / tyrum plugin install ${where}`);
    return 0;
  } catch (e) {
    // Build failures, and file-system errors while reading or writing the plugin (EACCES, ENOSPC, ...).
    const systemError = e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && (e as NodeJS.ErrnoException).syscall !== undefined;
    if (!(e instanceof PluginBuildError) && !systemError) throw e;
    const stage = e instanceof PluginBuildError ? e.stage : 'setup';
    const message = (e as Error).message;
    io.err(`tyrum plugin build: ${message}`);
    if (values.json) io.out(JSON.stringify({ ok: false, stage, error: message }));
    return 1;
  }
}
