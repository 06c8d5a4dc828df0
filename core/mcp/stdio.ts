/**
 * The stdio transport for MCP servers the gateway starts. It implements the SDK's `Transport`
 * and reuses its line framing (`ReadBuffer`, `serializeMessage`), but spawns the process itself
 * because the SDK's `StdioClientTransport` always merges a default environment (HOME, USER,
 * SHELL, ...) into the child's: Tyrum passes exactly the environment it builds, nothing
 * inherited unless granted. It also bounds what it reads: one message over `maxMessageBytes`
 * (no newline yet) kills the server; stderr is kept as a bounded head and tail for diagnostics
 * ({@link stderrSummary}: a failing start is usually explained by its first error line).
 *
 * The server runs in its own process group so a stop also ends the grandchildren (`npx` starts
 * a second node); SIGTERM first, SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface StdioOptions {
  command: string;
  args: readonly string[];
  /** The whole environment of the child. */
  env: Record<string, string>;
  cwd: string;
  maxMessageBytes: number;
  /** Bytes of stderr kept (the head, and the tail), default 8 KiB each. */
  stderrTailBytes?: number;
  /** Grace between SIGTERM and SIGKILL, default 2 s. */
  killGraceMs?: number;
}

export class ProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private child: ChildProcess | null = null;
  private readonly buffer: ReadBuffer;
  private stderrTail = '';
  private stderrHead = '';
  private closed = false;
  /** Why the transport stopped the server itself (e.g. an oversized message), for health reports. */
  failure: string | null = null;

  constructor(private readonly o: StdioOptions) {
    this.buffer = new ReadBuffer({ maxBufferSize: o.maxMessageBytes });
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** The last bytes the server wrote to stderr (for health reports; may contain anything the server printed). */
  get stderr(): string {
    return this.stderrTail;
  }

  /** The first bytes the server wrote to stderr (where a failing start usually says why). */
  get stderrStart(): string {
    return this.stderrHead;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error('transport already started');
    await new Promise<void>((resolve, reject) => {
      const child = spawn(this.o.command, [...this.o.args], {
        env: this.o.env,
        cwd: this.o.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        detached: true,
        windowsHide: true,
      });
      this.child = child;
      child.once('error', (e) => {
        if (!child.pid) reject(e);
        else this.onerror?.(e);
      });
      child.once('spawn', () => resolve());
      child.once('close', () => {
        this.child = null;
        if (!this.closed) {
          this.closed = true;
          this.onclose?.();
        }
      });
      child.stdin!.on('error', (e) => this.onerror?.(e));
      child.stdout!.on('data', (chunk: Buffer) => {
        try {
          this.buffer.append(chunk);
        } catch {
          this.failure = `the server sent a message larger than ${this.o.maxMessageBytes} bytes; it was stopped`;
          this.onerror?.(new Error(this.failure));
          void this.close();
          return;
        }
        for (;;) {
          let msg: JSONRPCMessage | null;
          try {
            msg = this.buffer.readMessage();
          } catch (e) {
            this.onerror?.(e instanceof Error ? e : new Error(String(e)));
            continue;
          }
          if (msg === null) break;
          this.onmessage?.(msg);
        }
      });
      const tail = this.o.stderrTailBytes ?? 8192;
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (s: string) => {
        if (this.stderrHead.length < tail) this.stderrHead += s.slice(0, tail - this.stderrHead.length);
        this.stderrTail = (this.stderrTail + s).slice(-tail);
      });
    });
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.destroyed) throw new Error('not connected');
    if (!stdin.write(serializeMessage(message))) await new Promise<void>((r) => stdin.once('drain', () => r()));
  }

  async close(): Promise<void> {
    const child = this.child;
    this.buffer.clear();
    if (!child) return;
    const exited = new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r();
      else child.once('exit', () => r());
    });
    try {
      child.stdin?.end();
    } catch {
      // already gone
    }
    signalGroup(child, 'SIGTERM');
    const grace = this.o.killGraceMs ?? 2000;
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), grace).unref());
    if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') signalGroup(child, 'SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, grace).unref())]);
  }
}

/** Signals the child's whole process group (it was spawned detached, as a group leader). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Most error lines quoted by {@link stderrSummary}, and most characters of each. */
const SUMMARY_LINES = 3;
const SUMMARY_LINE_CHARS = 240;

/**
 * What a server's stderr says about why it stopped, in one line: its first lines naming an error
 * (e.g. Node's "Error: Cannot find module '...'", which comes before a stack trace and a "Node.js
 * v20" trailer), else its last non-empty lines. Empty when it wrote nothing.
 */
export function stderrSummary(head: string, tail: string): string {
  const lines = (text: string) =>
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
  const clip = (l: string) => (l.length > SUMMARY_LINE_CHARS ? `${l.slice(0, SUMMARY_LINE_CHARS)}…` : l);
  const errors = lines(head).filter((l) => /\b(error|err_[a-z_]+|exception|fatal|panic|cannot|not found|no such file)\b/i.test(l) && !/^at /.test(l));
  const picked = errors.length > 0 ? errors.slice(0, SUMMARY_LINES) : lines(tail).slice(-SUMMARY_LINES);
  return picked.map(clip).join(' | ');
}
