/**
 * shell.exec for the headless node.
 *
 * Security model: shell.exec is confined by the command allowlist, not by paths. Each allowed
 * name is resolved once, at construction, against the fixed PATH=/usr/local/bin:/usr/bin:/bin to
 * an absolute real path (construction fails for a name that does not resolve), and argv[0] must be
 * an allowed name or that resolved path; the resolved path is what is spawned, never a PATH
 * lookup. No shell is involved (shell: false), so `;`, `$(...)` and backticks in arguments are
 * plain bytes. The workspace only chooses the working directory (opened and verified like any
 * workspace directory, then entered through /proc/self/fd/<fd>): an allowed `cat` can still read
 * /etc/passwd, and an allowed `sh` can do anything the node's user can. The environment is
 * replaced by {PATH, HOME: the workspace root, LANG}; nothing is inherited (no TYRUM_* secrets).
 *
 * Every command runs in its own process group (detached). At the timeout the group gets SIGTERM,
 * then SIGKILL after a grace period; when the leader exits normally the group gets SIGKILL too, so
 * a background child does not outlive its command. Limits of this: a child that calls setsid (or
 * setpgid) leaves the group and escapes these kills (a cgroup or `systemd-run --scope` wrapper is
 * the follow-up); after its grace period the node stops waiting for pipes such a child holds open.
 * Output is capped per stream; the digests cover the full streams.
 */
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import type { ShellExecOutput } from '../../../schemas/src/capabilities.js';
import type { CapabilityResult } from './fs.js';
import { NodeCapabilityError, type Workspace } from './workspace.js';

/** The only PATH commands are resolved against and run with. */
export const SHELL_PATH = '/usr/local/bin:/usr/bin:/bin';

export interface ShellOptions {
  /** Command names (looked up on SHELL_PATH) or absolute paths the node allows as argv[0]. */
  allow: readonly string[];
  /** Bytes kept of each of stdout and stderr (default 64 KiB). */
  maxOutputBytes?: number;
  /** Time between SIGTERM and SIGKILL at a timeout, and the wait for pipes after the leader exits (default 1000 ms). */
  killGraceMs?: number;
  /** When the call names no timeout_ms (default 30000 ms). */
  defaultTimeoutMs?: number;
}

/** What the caller (the node runtime) knows about the dispatch. */
export interface ExecContext {
  /** The dispatch's own timeout: the command gets at most this minus 500 ms. */
  timeout_ms?: number;
  /** Streamed evidence, called once the process exists. */
  onEvidence?: (evidence: { kind: 'started'; pid: number }) => void;
}

export const DEFAULT_SHELL_OUTPUT_BYTES = 64 * 1024;
const DISPATCH_MARGIN_MS = 500;
const MAX_TIMEOUT_MS = 300_000;
const MAX_STDIN = 65_536;

/** Resolve an allowed command to an absolute real path, or throw. */
export function resolveCommand(name: string): string {
  const executable = (p: string) => {
    try {
      if (!statSync(p).isFile()) return false;
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (name.startsWith('/')) {
    if (executable(name)) return realpathSync(name);
  } else if (name.length > 0 && !name.includes('/') && name !== '.' && name !== '..') {
    for (const dir of SHELL_PATH.split(':')) {
      const p = `${dir}/${name}`;
      if (executable(p)) return realpathSync(p);
    }
  }
  throw new NodeCapabilityError('invalid_request', `allowed command ${JSON.stringify(name)} cannot be resolved to an executable on ${SHELL_PATH}`, { reason: 'unresolvable_command', command: name });
}

/** Keeps the first `cap` bytes of a stream and digests all of it. */
class Capture {
  readonly #hash: Hash = createHash('sha256');
  readonly #parts: Buffer[] = [];
  #kept = 0;
  bytes = 0;
  constructor(readonly cap: number) {}
  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.#hash.update(chunk);
    if (this.#kept < this.cap) {
      const take = chunk.subarray(0, this.cap - this.#kept);
      this.#parts.push(take);
      this.#kept += take.length;
    }
  }
  finish(): { text: string; evidence: { bytes: number; sha256: string; truncated: boolean } } {
    return { text: Buffer.concat(this.#parts).toString('utf8'), evidence: { bytes: this.bytes, sha256: this.#hash.digest('hex'), truncated: this.bytes > this.#kept } };
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: nobody left in the group
  }
}

/** shell.exec over one workspace (which also serializes it with the fs capabilities). */
export class ShellExec {
  /** Allowed name (or absolute path as given) → resolved absolute real path. */
  readonly commands: ReadonlyMap<string, string>;
  readonly #byPath = new Map<string, string>();
  readonly #maxOutput: number;
  readonly #grace: number;
  readonly #defaultTimeout: number;

  constructor(
    readonly workspace: Workspace,
    options: ShellOptions,
  ) {
    if (options.allow.length === 0) throw new NodeCapabilityError('invalid_request', 'shell.exec needs at least one allowed command');
    const commands = new Map<string, string>();
    for (const name of options.allow) {
      const abs = resolveCommand(name);
      commands.set(name, abs);
      if (!this.#byPath.has(abs)) this.#byPath.set(abs, name);
    }
    this.commands = commands;
    this.#maxOutput = options.maxOutputBytes ?? DEFAULT_SHELL_OUTPUT_BYTES;
    this.#grace = options.killGraceMs ?? 1000;
    this.#defaultTimeout = options.defaultTimeoutMs ?? 30_000;
  }

  exec(args: unknown, ctx: ExecContext = {}): Promise<CapabilityResult<ShellExecOutput>> {
    return this.workspace.exclusive(async () => {
      const a = checkArgs(args);
      const argv0 = a.argv[0]!;
      const abs = this.commands.get(argv0) ?? (this.#byPath.has(argv0) ? argv0 : undefined);
      if (abs === undefined) throw new NodeCapabilityError('forbidden', `command ${JSON.stringify(argv0)} is not allowed on this node`, { reason: 'not_allowed' });
      let timeout = a.timeout_ms ?? this.#defaultTimeout;
      if (ctx.timeout_ms !== undefined) timeout = Math.min(timeout, ctx.timeout_ms - DISPATCH_MARGIN_MS);
      if (timeout <= 0) throw new NodeCapabilityError('timeout', `the dispatch deadline leaves no time to run the command`, { reason: 'deadline' });
      const dir = await this.workspace.openDir(a.cwd ?? '.');
      try {
        return await this.#run(abs, this.#byPath.get(abs) ?? argv0, a.argv.slice(1), dir.fdPath, timeout, a.stdin, ctx);
      } finally {
        await dir.close();
      }
    });
  }

  #run(abs: string, name: string, rest: string[], cwd: string, timeout: number, stdin: string | undefined, ctx: ExecContext): Promise<CapabilityResult<ShellExecOutput>> {
    return new Promise((resolve, reject) => {
      const start = process.hrtime.bigint();
      const child = spawn(abs, rest, {
        argv0: name,
        shell: false,
        cwd,
        env: { PATH: SHELL_PATH, HOME: this.workspace.root, LANG: 'C.UTF-8' },
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const out = new Capture(this.#maxOutput);
      const err = new Capture(this.#maxOutput);
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.stdin?.on('error', () => undefined); // EPIPE when the command does not read its input
      child.stdin?.end(stdin ?? '');

      let timedOut = false;
      let pgidKilled = false;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      let done = false;
      const timers: NodeJS.Timeout[] = [];
      const pid = child.pid;

      const finish = () => {
        if (done || exit === null) return;
        done = true;
        for (const tm of timers) clearTimeout(tm);
        const o = out.finish();
        const e = err.finish();
        const duration_ms = Number((process.hrtime.bigint() - start) / 1_000_000n);
        resolve({
          output: {
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: timedOut,
            stdout: o.text,
            stderr: e.text,
            stdout_truncated: o.evidence.truncated,
            stderr_truncated: e.evidence.truncated,
            duration_ms,
          },
          evidence: { argv0_resolved: abs, exit_code: exit.code, signal: exit.signal, timed_out: timedOut, duration_ms, stdout: o.evidence, stderr: e.evidence, pgid_killed: pgidKilled },
        });
      };

      child.on('error', (e) => {
        if (done) return;
        if (pid === undefined || exit === null) {
          done = true;
          for (const tm of timers) clearTimeout(tm);
          if (pid !== undefined) killGroup(pid, 'SIGKILL');
          reject(new NodeCapabilityError('internal', `could not run ${abs}: ${e.message}`, { reason: 'spawn_failed' }));
        }
      });
      if (pid === undefined) return; // 'error' follows

      ctx.onEvidence?.({ kind: 'started', pid });
      timers.push(
        setTimeout(() => {
          if (exit !== null) return; // the leader already ended; the exit path handles the group
          timedOut = true;
          if (killGroup(pid, 'SIGTERM')) pgidKilled = true;
          timers.push(
            setTimeout(() => {
              if (killGroup(pid, 'SIGKILL')) pgidKilled = true;
            }, this.#grace),
          );
        }, timeout),
      );
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        // The leader is gone (and reaped): whatever is left in its group dies now (J2).
        if (killGroup(pid, 'SIGKILL')) pgidKilled = true;
        // A child that left the group may hold the pipes open: stop waiting for them after the grace.
        timers.push(
          setTimeout(() => {
            child.stdout.destroy();
            child.stderr.destroy();
            finish();
          }, this.#grace),
        );
      });
      child.on('close', finish);
    });
  }
}

function checkArgs(args: unknown): { argv: string[]; cwd?: string; timeout_ms?: number; stdin?: string } {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new NodeCapabilityError('invalid_request', 'arguments must be an object');
  const a = args as Record<string, unknown>;
  for (const k of Object.keys(a)) if (!['argv', 'cwd', 'timeout_ms', 'stdin'].includes(k)) throw new NodeCapabilityError('invalid_request', `unknown argument ${k}`);
  const { argv, cwd, timeout_ms, stdin } = a;
  if (!Array.isArray(argv) || argv.length < 1 || argv.length > 64 || !argv.every((x) => typeof x === 'string' && x.length <= 4096 && !x.includes('\0'))) {
    throw new NodeCapabilityError('invalid_request', 'argv must be 1 to 64 strings (no NUL, at most 4096 characters each)');
  }
  if (cwd !== undefined && typeof cwd !== 'string') throw new NodeCapabilityError('invalid_request', 'cwd must be a string');
  if (timeout_ms !== undefined && (typeof timeout_ms !== 'number' || !Number.isInteger(timeout_ms) || timeout_ms < 1 || timeout_ms > MAX_TIMEOUT_MS)) {
    throw new NodeCapabilityError('invalid_request', `timeout_ms must be an integer in [1, ${MAX_TIMEOUT_MS}]`);
  }
  if (stdin !== undefined && (typeof stdin !== 'string' || Buffer.byteLength(stdin) > MAX_STDIN)) throw new NodeCapabilityError('invalid_request', `stdin must be a string of at most ${MAX_STDIN} bytes`);
  return { argv: argv as string[], cwd: cwd as string | undefined, timeout_ms: timeout_ms as number | undefined, stdin: stdin as string | undefined };
}
