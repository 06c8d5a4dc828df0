/** Shared by the CLI commands that work on the gateway home directly. */
import { userInfo } from 'node:os';
import { TyrumError } from '../errors/index.js';
import { resolveHome } from '../config/home.js';
import type { HomeCore } from '../home.js';
import type { HomeServices } from '../runtime.js';

/** The audit actor of a CLI command: the local user, or 'unknown' without a passwd entry (containers). */
export function cliActor(): { kind: 'cli'; user: string } {
  try {
    return { kind: 'cli', user: userInfo().username };
  } catch {
    return { kind: 'cli', user: 'unknown' };
  }
}

/**
 * Opens the home (`--home`, $TYRUM_HOME or ~/.tyrum) with all its services (runtime.ts: plugins,
 * policy, MCP servers too), runs `fn`, and always closes it.
 */
export async function withHome<T>(homeFlag: string | undefined, fn: (svc: HomeServices) => Promise<T>): Promise<T> {
  const { openHome } = await import('../runtime.js');
  return using(openHome(resolveHome(homeFlag)), fn);
}

/**
 * Opens only the home's core (core/home.ts: config, database, key, secrets, audit, tokens,
 * approvals), for commands that need nothing more: they load no plugin, policy or MCP code.
 */
export async function withHomeCore<T>(homeFlag: string | undefined, fn: (svc: HomeCore) => Promise<T>): Promise<T> {
  const { openHomeCore } = await import('../home.js');
  return using(openHomeCore(resolveHome(homeFlag)), fn);
}

async function using<S extends { close(): Promise<void> }, T>(svc: S, fn: (svc: S) => Promise<T>): Promise<T> {
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
