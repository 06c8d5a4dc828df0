/**
 * `tyrum plugin types [DIR] [--out DIR] [--no-assembly] [--pdk PATH]`: typed config, tool inputs and
 * tool outputs for a plugin author, generated from the manifest (sdk/author/types.ts).
 */
import { resolve } from 'node:path';
import { shownPath, writePluginTypes } from '../types.js';
import { parse } from '../../../core/cli/args.js';
import type { Io } from '../../../core/cli/io.js';

export const TYPES_USAGE = `usage: tyrum plugin types [DIR] [--out DIR] [--no-assembly] [--pdk PATH]

Generates types from DIR/tyrum.plugin.json (DIR defaults to the current folder):
  DIR/types/tyrum.d.ts         TypeScript: PluginConfig, <Tool>Input and <Tool>Output for each tool, Tools
                               (--out DIR writes DIR/tyrum.d.ts instead)
  DIR/assembly/tyrum-types.ts  AssemblyScript classes for the same shapes, parse<Type>(json) and
                               serialize<Type>(value), readPluginConfig() (for a plugin with asconfig.json
                               or assembly/; --no-assembly skips them)
  DIR/assembly/tyrum-json.ts   the JSON runtime they use, copied from the PDK (--pdk PATH: import it from
                               PATH/json instead, PATH as seen from DIR/assembly, e.g. ../vendor/tyrum-pdk)

A schema construct the AssemblyScript helpers cannot express exactly (oneOf, $ref, maps, unions, ...) is
refused with its location; nothing is written then.`;

/** `tyrum plugin types`; resolves with the exit code (errors are thrown as TyrumError). */
export async function pluginTypes(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, 'no-assembly': { type: 'boolean' }, pdk: { type: 'string' } }, 1);
  if (values.help) {
    io.out(TYPES_USAGE);
    return 0;
  }
  const dir = resolve(positionals[0] ?? '.');
  const result = await writePluginTypes(dir, {
    ...(values.out !== undefined ? { out: values.out } : {}),
    ...(values['no-assembly'] === true ? { assembly: 'never' as const } : {}),
    ...(values.pdk !== undefined ? { pdk: values.pdk } : {}),
  });
  const m = result.manifest;
  const tools = m.contributes.tools.length;
  io.out(`${m.id} ${m.version}: types for ${tools} tool${tools === 1 ? '' : 's'}${m.config_schema !== undefined ? ' and the config' : ''}`);
  for (const f of result.files) io.out(`  wrote ${shownPath(f, process.cwd())}`);
  if (result.assemblySkipped !== null) io.out(`  ${result.assemblySkipped}`);
  return 0;
}
