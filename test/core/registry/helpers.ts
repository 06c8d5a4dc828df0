/**
 * Plugin directories for registry and gateway tests: a WAT module compiled with wabt plus a
 * manifest, written where `tyrum plugin install` can read them.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import wabtInit from 'wabt';
import type { PluginManifest, RiskFlag, ToolIo } from '../../../schemas/index.js';
import type { PluginRegistry } from '../../../core/registry/plugins.js';

let wabt: ReturnType<typeof wabtInit> | undefined;
const FIXTURE_DIRS = [new URL('../../fixtures/wasm/', import.meta.url), new URL('../../fixtures/plugins/', import.meta.url)];

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Compiles a WAT fixture by name (test/fixtures/wasm or test/fixtures/plugins). */
export async function wasmOf(name: string): Promise<Buffer> {
  const w = await (wabt ??= wabtInit());
  for (const dir of FIXTURE_DIRS) {
    let text: string;
    try {
      text = readFileSync(new URL(`${name}.wat`, dir), 'utf8');
    } catch {
      continue;
    }
    const mod = w.parseWat(`${name}.wat`, text, { exceptions: true });
    try {
      mod.validate();
      return Buffer.from(mod.toBinary({}).buffer);
    } finally {
      mod.destroy();
    }
  }
  throw new Error(`no fixture ${name}.wat`);
}

export type ToolSpec = {
  id: string;
  export?: string;
  effect?: 'read_only' | 'state_changing';
  input?: Record<string, unknown>;
  output?: Record<string, unknown>;
  postcondition?: { path: string; equals?: unknown; exists?: true; matches?: string };
  /** The manifest's `input` and `output` encodings. */
  io?: { input?: ToolIo; output?: ToolIo };
};

/** Writes a plugin directory for `wat` and returns its path. */
export async function pluginDir(
  parent: string,
  opts: { id: string; wat: string | Buffer; version?: string; tools: ToolSpec[]; requests?: PluginManifest['requests']; risk?: PluginManifest['risk']; config_schema?: Record<string, unknown> },
): Promise<string> {
  const wasm = typeof opts.wat === 'string' ? await wasmOf(opts.wat) : opts.wat;
  const dir = join(parent, `${opts.id}-${opts.version ?? '1.0.0'}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'plugin.wasm'), wasm);
  const manifest: PluginManifest = {
    manifest_version: 1,
    id: opts.id,
    name: opts.id,
    version: opts.version ?? '1.0.0',
    description: `test plugin ${opts.id}`,
    publisher: 'Tyrum tests',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: 'plugin.wasm', sha256: sha256(wasm) },
    contributes: {
      tools: opts.tools.map((t) => ({
        id: t.id,
        export: t.export ?? t.id,
        description: `tool ${t.id}`,
        input_schema: t.input ?? { type: 'object' },
        output_schema: t.output ?? { type: 'object' },
        effect: t.effect ?? 'read_only',
        ...(t.postcondition ? { postcondition: t.postcondition } : {}),
        ...(t.io?.input ? { input: t.io.input } : {}),
        ...(t.io?.output ? { output: t.io.output } : {}),
      })),
    },
    ...(opts.requests ? { requests: opts.requests } : {}),
    ...(opts.risk ? { risk: opts.risk } : {}),
    ...(opts.config_schema ? { config_schema: opts.config_schema } : {}),
  };
  writeFileSync(join(dir, 'tyrum.plugin.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

/** The first-party plugins built by `npm run build`. */
export const BUILT = {
  textUtils: new URL('../../../plugins/text-utils/build/', import.meta.url).pathname,
  httpApi: new URL('../../../plugins/http-api/build/', import.meta.url).pathname,
  notes: new URL('../../../plugins/notes/build/', import.meta.url).pathname,
};

/** The risks the notes plugin declares (what `plugin grant notes --accept-risk` names). */
export const NOTES_RISKS: RiskFlag[] = ['state_changing', 'storage'];

const CLI = { kind: 'cli', user: 'test' };

/** Installs the plugin in `dir`, grants everything it requests (accepting `acceptRisks`) and enables it, as an operator would. */
export async function installEnabled(plugins: PluginRegistry, dir: string, acceptRisks: RiskFlag[] = []): Promise<void> {
  const { plugin } = await plugins.install(dir, CLI);
  await plugins.grant(plugin.id, { allRequested: true, ...(acceptRisks.length > 0 ? { acceptRisks } : {}) }, CLI);
  await plugins.enable(plugin.id, CLI);
}
