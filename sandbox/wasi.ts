/**
 * Tyrum's WASI preview1 shim: host functions for every `wasi_snapshot_preview1` function, so that
 * modules built for WASI (Rust `wasm32-wasip1`, TinyGo `-target wasi`, Go `wasip1`) load and run
 * unchanged, while the module gets nothing it was not granted:
 *
 * - no file system: there are no preopened directories (`fd_prestat_get` answers EBADF, so
 *   wasi-libc, Rust's std and Go see no file system) and no descriptor beyond 0, 1 and 2;
 * - stdin is at end of file; stdout and stderr go to the plugin's log (through the worker's sink:
 *   the same truncation, line cap and rate limit as the log host functions);
 * - no environment variables, no arguments, no sockets, no signals;
 * - clocks (realtime and monotonic, 1 µs resolution) and random bytes (the host's CSPRNG) are
 *   served; `poll_oneoff` sleeps on clock subscriptions, within the call's wall-clock budget;
 * - `proc_exit` stops the call with a coded error, whatever the exit code.
 *
 * This is not Node's `node:wasi` (it writes to the real process stdio and offers preopens) and not
 * Extism's WASI (which is `node:wasi`): both stay off. The functions are plain JavaScript working
 * on the guest's own linear memory (its exported `memory`), which the worker hands in through
 * {@link WasiHost.memory}; WASI pointers are i32 offsets into that memory, bounds-checked here
 * (EFAULT when outside it). Every call counts against the host-call budget ({@link WasiHost.enter}).
 *
 * This module does not import @extism/extism: the worker registers {@link wasiFunctions} under the
 * namespace the inspector renamed the imports to (host-abi.ts `WASI_SHIM_NS`).
 */
import { getRandomValues } from 'node:crypto';

/** WASI errno values used by the shim (preview1 `errno`). */
export const WASI_ERRNO = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  NOTDIR: 54,
  NOTSOCK: 57,
  SPIPE: 70,
} as const;

const { SUCCESS, BADF, FAULT, INVAL, NOSYS, NOTDIR, NOTSOCK, SPIPE } = WASI_ERRNO;

/** What the shim needs from the sandbox worker, for the activation `A` (one load or call). */
export interface WasiHost<A> {
  /** Count one host call against the budget and return the running activation; throws (aborts the guest) when there is none or the budget is spent. */
  enter(): A;
  /** The guest's linear memory as it is now; aborts the guest if the module exports none. */
  memory(a: A, fn: string): ArrayBuffer;
  /** Bytes the guest wrote to stdout (1) or stderr (2). */
  stdio(a: A, fd: 1 | 2, bytes: Uint8Array): void;
  /** `proc_exit(code)`: abort the guest with a coded error. */
  exit(a: A, code: number): never;
  /** The longest `poll_oneoff` may sleep in this activation, ms. */
  maxSleepMs(a: A): number;
}

/**
 * A shim host function: the SDK passes its call context first, then the wasm arguments, which the
 * engine converts by the import's signature (i32 → number, i64 → bigint; the inspector enforces
 * preview1's signatures). Typed `any[]` because that is what the SDK's `functions` option takes.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WasiFunction = (ctx: unknown, ...args: any[]) => number | void;

const FILETYPE_CHARACTER_DEVICE = 2;
const RIGHT_FD_READ = 1n << 1n;
const RIGHT_FD_WRITE = 1n << 6n;
const RIGHT_POLL_FD_READWRITE = 1n << 27n;
const EVENTTYPE_CLOCK = 0;
const EVENTTYPE_FD_READ = 1;
const EVENTTYPE_FD_WRITE = 2;
const EVENT_FD_READWRITE_HANGUP = 1;
const SUBSCRIPTION_CLOCK_ABSTIME = 1;
const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
/** Resolution of both clocks, ns. */
const CLOCK_RESOLUTION_NS = 1000n;
const SUBSCRIPTION_BYTES = 48;
const EVENT_BYTES = 32;
/** Longest single wait of a sleep, ms: the worker comes back to JavaScript this often, so a termination is never held up. */
const SLEEP_SLICE_MS = 100;

const isStdio = (fd: number): boolean => fd === 0 || fd === 1 || fd === 2;
/** EBADF for every descriptor but 0, 1 and 2, which get `stdio`. */
const onStdio = (fd: number, stdio: number): number => (isStdio(fd) ? stdio : BADF);

/** Realtime clock, ns since the epoch (µs resolution). */
function realtimeNs(): bigint {
  return BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

/** Monotonic clock, ns (µs resolution). */
function monotonicNs(): bigint {
  return (process.hrtime.bigint() / CLOCK_RESOLUTION_NS) * CLOCK_RESOLUTION_NS;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Block this thread for `ms`, in slices (nothing ever notifies `sleeper`). */
function sleep(ms: number): void {
  const until = performance.now() + ms;
  for (let left = ms; left > 0; left = until - performance.now()) Atomics.wait(sleeper, 0, 0, Math.min(left, SLEEP_SLICE_MS));
}

/** A view of guest memory for one host call, with bounds checks (pointers and lengths are wasm u32). */
class Guest {
  readonly view: DataView;
  constructor(readonly buffer: ArrayBuffer) {
    this.view = new DataView(buffer);
  }

  fits(ptr: number, len: number): boolean {
    return ptr + len <= this.buffer.byteLength;
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.buffer, ptr, len);
  }
}

/**
 * The shim's host functions, by preview1 name (all 46; host-abi.ts `WASI_PREVIEW1_SIGNATURES`
 * lists their signatures, which the inspector enforces).
 */
export function wasiFunctions<A>(host: WasiHost<A>): Record<string, WasiFunction> {
  const guest = (a: A, fn: string): Guest => new Guest(host.memory(a, fn));

  /** Write `values` as consecutive u32 at `ptr`. */
  const putU32s = (a: A, fn: string, ptr: number, ...values: number[]): number => {
    const g = guest(a, fn);
    if (!g.fits(ptr >>> 0, 4 * values.length)) return FAULT;
    values.forEach((v, i) => g.view.setUint32((ptr >>> 0) + 4 * i, v, true));
    return SUCCESS;
  };

  /** A function whose only answer is `answer(fd)` for its first (descriptor) argument. */
  const byFd =
    (answer: (fd: number) => number): WasiFunction =>
    (_ctx: unknown, fd: number): number => {
      host.enter();
      return answer(fd >>> 0);
    };
  /** A path function: no directory descriptor exists (0-2 are not directories). */
  const pathFn = byFd((fd) => onStdio(fd, NOTDIR));
  const sockFn = byFd((fd) => onStdio(fd, NOTSOCK));
  const fixed =
    (errno: number): WasiFunction =>
    (): number => {
      host.enter();
      return errno;
    };

  /** `*_sizes_get`: no arguments, no environment variables. */
  const emptySizes = (fn: string): WasiFunction => (_ctx: unknown, countPtr: number, sizePtr: number): number => {
    const a = host.enter();
    const r = putU32s(a, fn, countPtr, 0);
    return r === SUCCESS ? putU32s(a, fn, sizePtr, 0) : r;
  };

  return {
    args_sizes_get: emptySizes('args_sizes_get'),
    args_get: fixed(SUCCESS), // nothing to write: zero entries
    environ_sizes_get: emptySizes('environ_sizes_get'),
    environ_get: fixed(SUCCESS),

    clock_res_get: (_ctx: unknown, id: number, resPtr: number): number => {
      const a = host.enter();
      if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) return INVAL;
      const g = guest(a, 'clock_res_get');
      if (!g.fits(resPtr >>> 0, 8)) return FAULT;
      g.view.setBigUint64(resPtr >>> 0, CLOCK_RESOLUTION_NS, true);
      return SUCCESS;
    },
    clock_time_get: (_ctx: unknown, id: number, _precision: bigint, timePtr: number): number => {
      const a = host.enter();
      if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) return INVAL;
      const g = guest(a, 'clock_time_get');
      if (!g.fits(timePtr >>> 0, 8)) return FAULT;
      g.view.setBigUint64(timePtr >>> 0, id === CLOCK_REALTIME ? realtimeNs() : monotonicNs(), true);
      return SUCCESS;
    },

    random_get: (_ctx: unknown, bufPtr: number, len: number): number => {
      const a = host.enter();
      const g = guest(a, 'random_get');
      const ptr = bufPtr >>> 0;
      const n = len >>> 0;
      if (!g.fits(ptr, n)) return FAULT;
      for (let off = 0; off < n; off += 65536) getRandomValues(g.bytes(ptr + off, Math.min(65536, n - off)));
      return SUCCESS;
    },

    fd_write: (_ctx: unknown, fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number => {
      const a = host.enter();
      if (fd !== 1 && fd !== 2) return BADF;
      const g = guest(a, 'fd_write');
      const base = iovs >>> 0;
      const count = iovsLen >>> 0;
      if (!g.fits(base, count * 8) || !g.fits(nwrittenPtr >>> 0, 4)) return FAULT;
      let total = 0;
      for (let i = 0; i < count; i++) {
        const ptr = g.view.getUint32(base + 8 * i, true);
        const len = g.view.getUint32(base + 8 * i + 4, true);
        if (!g.fits(ptr, len)) return FAULT;
        total += len;
      }
      if (total > 0xffffffff) return INVAL;
      for (let i = 0; i < count; i++) {
        const len = g.view.getUint32(base + 8 * i + 4, true);
        if (len > 0) host.stdio(a, fd as 1 | 2, g.bytes(g.view.getUint32(base + 8 * i, true), len));
      }
      g.view.setUint32(nwrittenPtr >>> 0, total, true);
      return SUCCESS;
    },
    fd_read: (_ctx: unknown, fd: number, _iovs: number, _iovsLen: number, nreadPtr: number): number => {
      const a = host.enter();
      if (fd !== 0) return BADF;
      return putU32s(a, 'fd_read', nreadPtr, 0); // stdin is at end of file
    },
    fd_fdstat_get: (_ctx: unknown, fd: number, statPtr: number): number => {
      const a = host.enter();
      if (!isStdio(fd)) return BADF;
      const g = guest(a, 'fd_fdstat_get');
      const p = statPtr >>> 0;
      if (!g.fits(p, 24)) return FAULT;
      g.bytes(p, 24).fill(0);
      g.view.setUint8(p, FILETYPE_CHARACTER_DEVICE);
      g.view.setBigUint64(p + 8, (fd === 0 ? RIGHT_FD_READ : RIGHT_FD_WRITE) | RIGHT_POLL_FD_READWRITE, true);
      return SUCCESS;
    },
    fd_filestat_get: (_ctx: unknown, fd: number, statPtr: number): number => {
      const a = host.enter();
      if (!isStdio(fd)) return BADF;
      const g = guest(a, 'fd_filestat_get');
      const p = statPtr >>> 0;
      if (!g.fits(p, 64)) return FAULT;
      g.bytes(p, 64).fill(0);
      g.view.setUint8(p + 16, FILETYPE_CHARACTER_DEVICE);
      g.view.setBigUint64(p + 24, 1n, true); // nlink
      return SUCCESS;
    },
    fd_fdstat_set_flags: byFd((fd) => onStdio(fd, SUCCESS)), // no flag changes what a log sink does
    fd_prestat_get: byFd(() => BADF), // no preopened directories: the guest sees no file system
    fd_prestat_dir_name: byFd(() => BADF),
    fd_seek: byFd((fd) => onStdio(fd, SPIPE)),
    fd_tell: byFd((fd) => onStdio(fd, SPIPE)),
    fd_pread: byFd((fd) => onStdio(fd, SPIPE)),
    fd_pwrite: byFd((fd) => onStdio(fd, SPIPE)),
    fd_advise: byFd((fd) => onStdio(fd, SPIPE)),
    fd_readdir: byFd((fd) => onStdio(fd, NOTDIR)),
    fd_allocate: byFd((fd) => onStdio(fd, NOSYS)),
    fd_close: byFd((fd) => onStdio(fd, NOSYS)),
    fd_datasync: byFd((fd) => onStdio(fd, NOSYS)),
    fd_sync: byFd((fd) => onStdio(fd, NOSYS)),
    fd_fdstat_set_rights: byFd((fd) => onStdio(fd, NOSYS)),
    fd_filestat_set_size: byFd((fd) => onStdio(fd, NOSYS)),
    fd_filestat_set_times: byFd((fd) => onStdio(fd, NOSYS)),
    fd_renumber: (_ctx: unknown, from: number, to: number): number => {
      host.enter();
      return isStdio(from >>> 0) && isStdio(to >>> 0) ? NOSYS : BADF;
    },

    path_create_directory: pathFn,
    path_filestat_get: pathFn,
    path_filestat_set_times: pathFn,
    path_open: pathFn,
    path_readlink: pathFn,
    path_remove_directory: pathFn,
    path_unlink_file: pathFn,
    path_link: (_ctx: unknown, oldFd: number, _flags: number, _path: number, _len: number, newFd: number): number => {
      host.enter();
      return isStdio(oldFd >>> 0) && isStdio(newFd >>> 0) ? NOTDIR : BADF;
    },
    path_rename: (_ctx: unknown, oldFd: number, _path: number, _len: number, newFd: number): number => {
      host.enter();
      return isStdio(oldFd >>> 0) && isStdio(newFd >>> 0) ? NOTDIR : BADF;
    },
    path_symlink: (_ctx: unknown, _old: number, _oldLen: number, fd: number): number => {
      host.enter();
      return onStdio(fd >>> 0, NOTDIR);
    },

    sock_accept: sockFn,
    sock_recv: sockFn,
    sock_send: sockFn,
    sock_shutdown: sockFn,

    poll_oneoff: (_ctx: unknown, inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number => {
      const a = host.enter();
      const n = nsubs >>> 0;
      if (n === 0) return INVAL;
      let g = guest(a, 'poll_oneoff');
      const subs = inPtr >>> 0;
      const out = outPtr >>> 0;
      if (!g.fits(subs, n * SUBSCRIPTION_BYTES) || !g.fits(out, n * EVENT_BYTES) || !g.fits(neventsPtr >>> 0, 4)) return FAULT;
      interface Ev {
        userdata: bigint;
        error: number;
        type: number;
        flags: number;
      }
      const ready: Ev[] = [];
      const clocks: { userdata: bigint; deadline: bigint }[] = [];
      const now = monotonicNs();
      for (let i = 0; i < n; i++) {
        const p = subs + i * SUBSCRIPTION_BYTES;
        const userdata = g.view.getBigUint64(p, true);
        const tag = g.view.getUint8(p + 8);
        if (tag === EVENTTYPE_CLOCK) {
          const id = g.view.getUint32(p + 16, true);
          const timeout = g.view.getBigUint64(p + 24, true);
          const abs = (g.view.getUint16(p + 40, true) & SUBSCRIPTION_CLOCK_ABSTIME) !== 0;
          if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) {
            ready.push({ userdata, error: INVAL, type: tag, flags: 0 });
            continue;
          }
          const rel = abs ? timeout - (id === CLOCK_REALTIME ? realtimeNs() : now) : timeout;
          clocks.push({ userdata, deadline: now + (rel > 0n ? rel : 0n) });
        } else if (tag === EVENTTYPE_FD_READ || tag === EVENTTYPE_FD_WRITE) {
          const fd = g.view.getUint32(p + 16, true);
          if (tag === EVENTTYPE_FD_READ && fd === 0) ready.push({ userdata, error: SUCCESS, type: tag, flags: EVENT_FD_READWRITE_HANGUP });
          else if (tag === EVENTTYPE_FD_WRITE && (fd === 1 || fd === 2)) ready.push({ userdata, error: SUCCESS, type: tag, flags: 0 });
          else ready.push({ userdata, error: BADF, type: tag, flags: 0 });
        } else {
          return INVAL;
        }
      }
      if (ready.length === 0) {
        // Only clocks: sleep until the first expires (a sleep past the call's budget ends with the call).
        const first = clocks.reduce((m, c) => (c.deadline < m ? c.deadline : m), clocks[0]?.deadline ?? now);
        const ms = Math.min(Number(first - now) / 1e6, host.maxSleepMs(a));
        if (ms > 0) sleep(ms);
        g = guest(a, 'poll_oneoff');
      }
      const at = monotonicNs();
      const due = clocks.filter((c) => c.deadline <= at);
      if (ready.length === 0 && due.length === 0 && clocks.length > 0) due.push(clocks.reduce((m, c) => (c.deadline < m.deadline ? c : m)));
      for (const c of due) ready.push({ userdata: c.userdata, error: SUCCESS, type: EVENTTYPE_CLOCK, flags: 0 });
      ready.forEach((e, i) => {
        const p = out + i * EVENT_BYTES;
        g.bytes(p, EVENT_BYTES).fill(0);
        g.view.setBigUint64(p, e.userdata, true);
        g.view.setUint16(p + 8, e.error, true);
        g.view.setUint8(p + 10, e.type);
        g.view.setUint16(p + 24, e.flags, true);
      });
      g.view.setUint32(neventsPtr >>> 0, ready.length, true);
      return SUCCESS;
    },

    proc_exit: (_ctx: unknown, code: number): never => {
      const a = host.enter();
      return host.exit(a, code >>> 0);
    },
    proc_raise: fixed(NOSYS),
    sched_yield: fixed(SUCCESS), // one thread, nothing to yield to
  };
}

/**
 * Line buffering of one output stream (stdout or stderr) for one activation: complete lines are
 * handed to `emit` without their newline (and a `\r` before it); a line longer than `cap` bytes
 * keeps its first `cap` bytes and its full length, so the sink can truncate it the way it
 * truncates log lines without holding more than `cap` bytes per stream.
 */
export class LineBuffer {
  #kept: Uint8Array;
  #used = 0;
  #total = 0;
  #last = -1;

  constructor(
    readonly cap: number,
    private readonly emit: (kept: Uint8Array, total: number) => void,
  ) {
    this.#kept = new Uint8Array(Math.min(cap, 256));
  }

  write(bytes: Uint8Array): void {
    let from = 0;
    for (;;) {
      const nl = bytes.indexOf(0x0a, from);
      if (nl === -1) {
        this.#append(bytes.subarray(from));
        return;
      }
      this.#append(bytes.subarray(from, nl));
      this.#line();
      from = nl + 1;
    }
  }

  /** Emit what is left of an unfinished line (at the end of a call). */
  flush(): void {
    if (this.#total > 0) this.#line();
  }

  #append(b: Uint8Array): void {
    if (b.byteLength === 0) return;
    this.#total += b.byteLength;
    this.#last = b[b.byteLength - 1] as number;
    const room = this.cap - this.#used;
    const take = Math.min(room, b.byteLength);
    if (take <= 0) return;
    if (this.#used + take > this.#kept.byteLength) {
      const grown = new Uint8Array(Math.min(this.cap, Math.max(this.#kept.byteLength * 2, this.#used + take)));
      grown.set(this.#kept.subarray(0, this.#used));
      this.#kept = grown;
    }
    this.#kept.set(b.subarray(0, take), this.#used);
    this.#used += take;
  }

  #line(): void {
    let used = this.#used;
    let total = this.#total;
    if (total > 0 && this.#last === 0x0d) {
      if (used === total) used -= 1;
      total -= 1;
    }
    this.emit(this.#kept.slice(0, used), total);
    this.#used = 0;
    this.#total = 0;
    this.#last = -1;
  }
}
