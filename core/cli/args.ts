/** Argument parsing shared by the CLI commands (node:util parseArgs, strict). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TyrumError } from '../errors/index.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses argv strictly; unknown flags and missing values are usage errors naming the flag. */
export function parse<O extends Options>(argv: string[], options: O, positionals = 0) {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    if (r.positionals.length > positionals) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unexpected argument "${r.positionals[positionals]}"`);
    return r;
  } catch (e) {
    if (e instanceof TyrumError) throw e;
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', (e as Error).message);
  }
}

/** A --port value: an integer 0-65535. */
export function portArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--port must be an integer 0-65535, got "${v}"`);
  return Number(v);
}

/** A comma-separated list flag. */
export function listArg(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}
