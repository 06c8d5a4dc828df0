/** Shared by the CLI commands that work on the gateway home directly. */
import { userInfo } from 'node:os';
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/index.js';
import { openHome, type HomeServices } from '../runtime.js';

/** The audit actor of a CLI command: the local user, or 'unknown' without a passwd entry (containers). */
export function cliActor(): { kind: 'cli'; user: string } {
  try {
    return { kind: 'cli', user: userInfo().username };
  } catch {
    return { kind: 'cli', user: 'unknown' };
  }
}

/** Opens the home (`--home`, $TYRUM_HOME or ~/.tyrum), runs `fn`, and always closes it. */
export async function withHome<T>(homeFlag: string | undefined, fn: (svc: HomeServices) => Promise<T>): Promise<T> {
  const svc = openHome(resolveHome(homeFlag));
  try {
    return await fn(svc);
  } finally {
    await svc.close();
  }
}

/** A non-negative integer flag value. */
export function intArg(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--${name} must be a positive integer`);
  return Number(v);
}
