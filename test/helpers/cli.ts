/** Runs the CLI in-process with captured output and temporarily set environment variables; or as a real process. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { main } from '../../core/cli/main.js';
import { startTestGateway, removeHome, type TestGateway } from './gateway.js';

/** The `tyrum` entry from source (test/helpers/tyrum-src.ts), run with tsx. */
export const TYRUM_SRC = fileURLToPath(new URL('./tyrum-src.ts', import.meta.url));

/** A `tyrum ARGS` process from source, with its output collected as it comes. */
export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  out(): string;
  err(): string;
  /** Resolves with the exit code; rejects after `ms` (a hang guard). */
  exit(ms?: number): Promise<number | null>;
  /** Resolves when stderr matches `re`, rejects when the process exits first or after `ms`. */
  waitErr(re: RegExp, ms?: number): Promise<RegExpExecArray>;
}

/** `imports`: more modules for Node to preload with --import, after tsx (e.g. test/helpers/record-loads.ts). */
export function spawnCli(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; imports?: string[] } = {}): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', ...(opts.imports ?? []).flatMap((m) => ['--import', m]), TYRUM_SRC, ...argv], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const guard = <T>(p: Promise<T>, ms: number, what: string) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms; stderr so far:\n${err}`)), ms).unref())]);
  return {
    child,
    out: () => out,
    err: () => err,
    exit: (ms = 30_000) => guard(exited, ms, 'tyrum did not exit'),
    waitErr: (re, ms = 30_000) =>
      guard(
        new Promise<RegExpExecArray>((resolve, reject) => {
          const check = () => {
            const m = re.exec(err);
            if (m) resolve(m);
            else if (child.exitCode !== null) reject(new Error(`tyrum exited (${child.exitCode}) before printing ${re}; stderr:\n${err}`));
            else setTimeout(check, 50);
          };
          check();
        }),
        ms,
        `no ${re} on stderr`,
      ),
  };
}

export async function runCli(argv: string[], env: Record<string, string> = {}, onOut?: (line: string) => void): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    // `onOut` sees each line as it is written (a test that acts on what a long command shows).
    const code = await main(argv, {
      out: (s) => {
        out.push(s);
        onOut?.(s);
      },
      err: (s) => err.push(s),
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/**
 * A test gateway for CLI commands: `H` (`--home` its home) for commands on the home and `env`
 * (its admin token and URL in TYRUM_TOKEN/TYRUM_URL) for commands through it. Closed, and its home
 * removed, when `t` ends.
 */
export async function cliGateway(t: { teardown(fn: () => unknown): void }): Promise<{ gw: TestGateway; H: string[]; env: Record<string, string> }> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  return { gw, H: ['--home', gw.home], env: { TYRUM_TOKEN: gw.adminToken, TYRUM_URL: gw.url } };
}
