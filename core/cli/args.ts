/** Argument parsing shared by the CLI commands (node:util parseArgs, strict). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TyrumError } from '../errors/index.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses argv strictly; unknown flags and missing values are usage errors naming the flag, in
 * Tyrum's words rather than Node's (`details.option`; main adds which command it was given to).
 */
export function parse<O extends Options>(argv: string[], options: O, positionals = 0) {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    if (r.positionals.length > positionals) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unexpected argument "${r.positionals[positionals]}"`);
    return r;
  } catch (e) {
    if (e instanceof TyrumError) throw e;
    throw parseError(e as Error & { code?: string }, Object.keys(options));
  }
}

/** Node's parseArgs errors, said plainly: "unknown option '--x'", with a suggestion when one is close. */
function parseError(e: Error & { code?: string }, known: string[]): TyrumError {
  const option = /'(-{1,2}[^' ]+)/.exec(e.message)?.[1];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) {
    const near = closest(option.replace(/^-+/, ''), [...known, 'help']);
    return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown option '${option}'${near ? `; did you mean '--${near}'?` : ''}`, { option, unknown_option: true });
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) {
    const name = option.replace(/ <value>$/, '');
    const takesNone = /does not take an argument/.test(e.message);
    return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', takesNone ? `option '${name}' takes no value` : `option '${name}' needs a value (${name} VALUE)`, { option: name });
  }
  return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', e.message);
}

/** Every command and its subcommands (for `tyrum help X`, "did you mean" and naming the command in errors). */
export const COMMANDS: Readonly<Record<string, readonly string[]>> = {
  start: [],
  doctor: [],
  ping: [],
  token: ['create', 'list', 'revoke'],
  tenant: ['create', 'list'],
  audit: ['verify', 'list', 'archive'],
  gc: [],
  plugin: ['install', 'list', 'lock', 'info', 'grant', 'revoke', 'enable', 'disable', 'remove', 'config', 'new', 'build', 'types', 'test', 'pack', 'keygen', 'sign'],
  tool: ['list', 'call'],
  secret: ['set', 'list', 'rm'],
  policy: ['show', 'set', 'explain', 'override-revoke'],
  approvals: ['list', 'approve', 'deny'],
  run: ['list', 'get', 'cancel', 'resolve'],
  artifact: ['list', 'get'],
  mcp: ['add', 'list', 'tools', 'diff', 'approve', 'remove'],
  node: ['enroll', 'list', 'approve', 'deny', 'revoke', 'run'],
  channel: ['add', 'list', 'remove', 'senders'],
  backend: ['set', 'show', 'test'],
  schedule: ['add', 'list', 'pause', 'resume', 'remove', 'next'],
  playbook: ['check', 'run', 'resume', 'get', 'list', 'cancel'],
  chat: [],
  ui: [],
  help: [],
  version: [],
};

/**
 * The usage error for `tyrum CMD SUB` when CMD has no subcommand SUB (or none was given), with the
 * nearest one when SUB looks like a typo. main raises it before running a command, so a command's
 * own switch only ever sees its subcommands and `--help`.
 */
export function subcommandError(cmd: string, sub: string | undefined): TyrumError {
  const subs = COMMANDS[cmd] ?? [];
  const has = `tyrum ${cmd} has: ${subs.join(', ')}; see: tyrum help ${cmd}`;
  if (sub === undefined) return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `missing command: tyrum ${cmd} COMMAND (${has})`);
  if (sub.startsWith('-')) return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `missing command before '${sub}': tyrum ${cmd} COMMAND [options] (${has})`);
  const near = closest(sub, subs);
  return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `unknown ${cmd} command "${sub}"${near ? `; did you mean "${near}"?` : ''} (${has})`);
}

/** A required positional argument: "missing ID: usage: tyrum plugin enable ID" when it is absent. */
export function need(value: string | undefined, name: string, usage: string): string {
  if (value === undefined || value === '') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `missing ${name}: usage: ${usage}`);
  return value;
}

/** The candidate nearest to `word` by edit distance, if near enough to be a likely typo. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const allowed = word.length <= 3 ? 1 : word.length <= 6 ? 2 : 3;
  return best !== null && bestDistance > 0 && bestDistance <= allowed ? best : null;
}

/** Optimal string alignment distance (Levenshtein with adjacent transpositions: "lsit" is one from "list"). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
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
