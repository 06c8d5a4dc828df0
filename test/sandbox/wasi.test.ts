// The WASI preview1 compatibility shim (sandbox/wasi.ts): modules that import WASI the way Rust
// `wasm32-wasip1` and TinyGo `-target wasi` builds do load unchanged, and get nothing they were not
// granted: stdout/stderr go to the plugin's log (never to the process's stdout), environ and args
// are empty, there is no file system, proc_exit stops the call with a coded error. Fixtures are WAT
// (compiled here with wabt) that call the imports the way those toolchains' runtimes do.
import t from 'tap';
import wabtInit from 'wabt';
import { isTyrumError } from '../../core/errors/index.js';
import { WASM_MCP_EXPORTS, WasmMcpConnection } from '../../core/mcp/wasm.js';
import { SandboxPool, WASI_ERRNO, WASI_PREVIEW1_FUNCTIONS, sandboxReason, type LoadOptions } from '../../sandbox/index.js';
import { WASI_PREVIEW1_SIGNATURES } from '../../sandbox/host-abi.js';
import { NO_INPUT, sha256 } from './helpers.js';

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());

const wabt = await wabtInit();

/** Compile WAT text to a module. */
function compile(text: string): Uint8Array {
  const mod = wabt.parseWat('inline.wat', text);
  try {
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

async function load(key: string, wasm: Uint8Array, exports: readonly string[], opts: Partial<LoadOptions> = {}) {
  return pool.load(key, { wasm, expectedSha256: sha256(wasm), exports, ...opts });
}

const u32s = (b: Uint8Array, n: number, at = 0): number[] => {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: n }, (_, i) => v.getUint32(at + 4 * i, true));
};
const u64 = (b: Uint8Array, at: number): bigint => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);

/** Kernel imports and `$out(ptr, len)`: copy guest memory to a kernel block and make it the call's output. */
const KERNEL = `
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (func $out (param $ptr i32) (param $len i32)
    (local $k i64) (local $i i32)
    (local.set $k (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (call $store_u8 (i64.add (local.get $k) (i64.extend_i32_u (local.get $i)))
                        (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (call $output_set (local.get $k) (i64.extend_i32_u (local.get $len))))`;

/** What a wasi-libc / Rust std / TinyGo runtime imports, and a reactor's `_initialize`. */
const APP = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  ${KERNEL}
  (memory (export "memory") 1)
  (global $inited (mut i32) (i32.const 0))
  (data (i32.const 2048) "hello from stdout")
  (data (i32.const 2080) "\\n")
  (data (i32.const 2096) "partial ")
  (data (i32.const 2112) "line\\nsecond line\\n")
  (data (i32.const 2144) "oops on stderr\\r\\n")
  (data (i32.const 2176) "tail without newline")
  (data (i32.const 2208) "config.toml")

  ;; Write [ptr, ptr+len) to fd with one iovec at 1024; returns the errno, nwritten at 1040.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 1024) (local.get $ptr))
    (i32.store (i32.const 1028) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 1024) (i32.const 1) (i32.const 1040)))

  ;; A reactor's start-up, as wasi-libc and the Go runtimes do it: look for preopened directories
  ;; from fd 3, seed from random_get, read the clock. Needs the guest memory during load.
  (func (export "_initialize")
    (i32.store (i32.const 260) (call $fd_prestat_get (i32.const 3) (i32.const 512)))
    (i32.store (i32.const 264) (call $random_get (i32.const 272) (i32.const 16)))
    (i32.store (i32.const 268) (call $clock_time_get (i32.const 0) (i64.const 1000) (i32.const 288)))
    (global.set $inited (i32.add (global.get $inited) (i32.const 1))))

  ;; A command's main: never run (as in Extism with WASI), or the load would fail.
  (func (export "_start") (call $proc_exit (i32.const 0)))

  ;; [inited u32, prestat errno, random errno, clock errno, 16 random bytes, realtime u64]
  (func (export "init_state") (result i32)
    (i32.store (i32.const 256) (global.get $inited))
    (call $out (i32.const 256) (i32.const 40))
    (i32.const 0))

  ;; Two iovecs ("hello from stdout", "\\n"), a line split over two writes, two lines in one write,
  ;; stderr with CRLF, an unfinished last line; writes to fds 0 and 5 fail.
  ;; Output: [nwritten of the first write, errno fd 0, errno fd 5, errno of the first write]
  (func (export "hello") (result i32)
    (i32.store (i32.const 1024) (i32.const 2048))
    (i32.store (i32.const 1028) (i32.const 17))
    (i32.store (i32.const 1032) (i32.const 2080))
    (i32.store (i32.const 1036) (i32.const 1))
    (i32.store (i32.const 1212) (call $fd_write (i32.const 1) (i32.const 1024) (i32.const 2) (i32.const 1040)))
    (i32.store (i32.const 1200) (i32.load (i32.const 1040)))
    (drop (call $write (i32.const 1) (i32.const 2096) (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 2112) (i32.const 17)))
    (drop (call $write (i32.const 2) (i32.const 2144) (i32.const 16)))
    (drop (call $write (i32.const 1) (i32.const 2176) (i32.const 20)))
    (i32.store (i32.const 1204) (call $write (i32.const 0) (i32.const 2048) (i32.const 5)))
    (i32.store (i32.const 1208) (call $write (i32.const 5) (i32.const 2048) (i32.const 5)))
    (call $out (i32.const 1200) (i32.const 16))
    (i32.const 0))

  ;; 300 stdout lines ("line"), then one stderr line.
  (func (export "chatty") (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const 300)))
        (i32.store (i32.const 1024) (i32.const 2112))
        (i32.store (i32.const 1028) (i32.const 5))
        (drop (call $fd_write (i32.const 1) (i32.const 1024) (i32.const 1) (i32.const 1040)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (drop (call $write (i32.const 2) (i32.const 2048) (i32.const 17)))
    (drop (call $write (i32.const 2) (i32.const 2080) (i32.const 1)))
    (i32.const 0))

  ;; Sizes pre-filled with 0xff must come back 0: [environ count, environ bytes, argc, argv bytes, 4 errnos]
  (func (export "env") (result i32)
    (memory.fill (i32.const 1024) (i32.const 255) (i32.const 16))
    (i32.store (i32.const 1040) (call $environ_sizes_get (i32.const 1024) (i32.const 1028)))
    (i32.store (i32.const 1044) (call $args_sizes_get (i32.const 1032) (i32.const 1036)))
    (i32.store (i32.const 1048) (call $environ_get (i32.const 1100) (i32.const 1200)))
    (i32.store (i32.const 1052) (call $args_get (i32.const 1100) (i32.const 1200)))
    (call $out (i32.const 1024) (i32.const 32))
    (i32.const 0))

  ;; [errno, errno of a buffer past the end of memory, 32 random bytes]
  (func (export "rand") (result i32)
    (i32.store (i32.const 1024) (call $random_get (i32.const 1032) (i32.const 32)))
    (i32.store (i32.const 1028) (call $random_get (i32.const 65520) (i32.const 32)))
    (call $out (i32.const 1024) (i32.const 40))
    (i32.const 0))

  ;; [realtime u64, monotonic u64, resolution u64, errnos: realtime, monotonic, res, cputime clock]
  (func (export "clock") (result i32)
    (i32.store (i32.const 1048) (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1024)))
    (i32.store (i32.const 1052) (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1032)))
    (i32.store (i32.const 1056) (call $clock_res_get (i32.const 1) (i32.const 1040)))
    (i32.store (i32.const 1060) (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 1032)))
    (call $out (i32.const 1024) (i32.const 40))
    (i32.const 0))

  ;; What std does to open "config.toml": no preopen, so path_open on any fd fails.
  ;; [prestat(3), path_open(3), path_open(0), fdstat(1), fdstat(3), fd_read(0), nread, filetype, rights u64]
  (func (export "fs") (result i32)
    (i32.store (i32.const 1024) (call $fd_prestat_get (i32.const 3) (i32.const 1100)))
    (i32.store (i32.const 1028) (call $path_open (i32.const 3) (i32.const 0) (i32.const 2208) (i32.const 11) (i32.const 0) (i64.const 0x1fffffff) (i64.const 0) (i32.const 0) (i32.const 1100)))
    (i32.store (i32.const 1032) (call $path_open (i32.const 0) (i32.const 0) (i32.const 2208) (i32.const 11) (i32.const 0) (i64.const 0x1fffffff) (i64.const 0) (i32.const 0) (i32.const 1100)))
    (i32.store (i32.const 1036) (call $fd_fdstat_get (i32.const 1) (i32.const 1200)))
    (i32.store (i32.const 1040) (call $fd_fdstat_get (i32.const 3) (i32.const 1300)))
    (i32.store (i32.const 1108) (i32.const 1400))
    (i32.store (i32.const 1112) (i32.const 64))
    (i32.store (i32.const 1048) (i32.const 99))
    (i32.store (i32.const 1044) (call $fd_read (i32.const 0) (i32.const 1108) (i32.const 1) (i32.const 1048)))
    (i32.store (i32.const 1052) (i32.load8_u (i32.const 1200)))
    (i64.store (i32.const 1056) (i64.load (i32.const 1208)))
    (call $out (i32.const 1024) (i32.const 40))
    (i32.const 0))

  ;; One relative monotonic clock subscription of 30 ms, userdata 42.
  ;; [errno, nevents, userdata u64, event errno u16 + type u8 packed into a u32]
  (func (export "sleep") (result i32)
    (memory.fill (i32.const 1024) (i32.const 0) (i32.const 128))
    (i64.store (i32.const 1024) (i64.const 42))
    (i32.store8 (i32.const 1032) (i32.const 0))
    (i32.store (i32.const 1040) (i32.const 1))
    (i64.store (i32.const 1048) (i64.const 30000000))
    (i32.store (i32.const 1300) (call $poll_oneoff (i32.const 1024) (i32.const 1100) (i32.const 1) (i32.const 1304)))
    (i64.store (i32.const 1308) (i64.load (i32.const 1100)))
    (i32.store (i32.const 1316) (i32.load (i32.const 1108)))
    (call $out (i32.const 1300) (i32.const 20))
    (i32.const 0))

  ;; fd_read on stdin and fd_write on fd 9, plus a 10 s clock: answered at once, without sleeping.
  ;; [errno, nevents, event 0: userdata (low u32), errno | type << 16, flags; event 1: userdata, errno | type << 16]
  (func (export "poll_fds") (result i32)
    (memory.fill (i32.const 1024) (i32.const 0) (i32.const 400))
    (i64.store (i32.const 1024) (i64.const 1))
    (i32.store8 (i32.const 1032) (i32.const 1))
    (i32.store (i32.const 1040) (i32.const 0))
    (i64.store (i32.const 1072) (i64.const 2))
    (i32.store8 (i32.const 1080) (i32.const 2))
    (i32.store (i32.const 1088) (i32.const 9))
    (i64.store (i32.const 1120) (i64.const 3))
    (i32.store8 (i32.const 1128) (i32.const 0))
    (i32.store (i32.const 1136) (i32.const 1))
    (i64.store (i32.const 1144) (i64.const 10000000000))
    (i32.store (i32.const 1400) (call $poll_oneoff (i32.const 1024) (i32.const 1200) (i32.const 3) (i32.const 1404)))
    (i32.store (i32.const 1408) (i32.load (i32.const 1200)))
    (i32.store (i32.const 1412) (i32.load (i32.const 1208)))
    (i32.store (i32.const 1416) (i32.load16_u (i32.const 1224)))
    (i32.store (i32.const 1420) (i32.load (i32.const 1232)))
    (i32.store (i32.const 1424) (i32.load (i32.const 1240)))
    (call $out (i32.const 1400) (i32.const 28))
    (i32.const 0))

  (func (export "spin") (result i32)
    (loop $l
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1024)))
      (br $l))
    (i32.const 0))

  (func (export "exit3") (result i32) (call $proc_exit (i32.const 3)) (i32.const 0))
  (func (export "exit0") (result i32) (call $proc_exit (i32.const 0)) (i32.const 0))
)`;

const app = compile(APP);
const APP_EXPORTS = ['init_state', 'hello', 'chatty', 'env', 'rand', 'clock', 'fs', 'sleep', 'poll_fds', 'spin', 'exit3', 'exit0'];
const { BADF, FAULT, INVAL, NOTDIR, NOSYS, SPIPE, NOTSOCK } = WASI_ERRNO;

const info = await load('app', app, APP_EXPORTS);

t.test('a module importing WASI loads; its imports are reported under their own names', async (t) => {
  t.ok(info.imports.includes('wasi_snapshot_preview1.fd_write'));
  t.ok(info.imports.includes('wasi_snapshot_preview1.path_open'));
  t.notOk(info.imports.some((i) => i.startsWith('tyrum:wasi')), 'the internal rename does not show');
});

t.test('_initialize runs once at load with the guest memory available; _start never runs', async (t) => {
  const before = Date.now();
  const r = await pool.call('app', 'init_state', NO_INPUT);
  const [inited, prestat, random, clock] = u32s(r.output, 4);
  t.equal(inited, 1, '_initialize ran once');
  t.equal(prestat, BADF, 'no preopened directory at fd 3');
  t.equal(random, 0);
  t.equal(clock, 0);
  t.not(Buffer.from(r.output.subarray(16, 32)).toString('hex'), '0'.repeat(32), 'random bytes were written during load');
  const realtimeMs = Number(u64(r.output, 32) / 1_000_000n);
  t.ok(realtimeMs <= before + 1000 && realtimeMs > before - 60_000, 'the realtime clock read during load is the wall clock');
});

t.test('stdout and stderr go to the plugin log, line by line; never to the process stdout', async (t) => {
  const seen: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    seen.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stdout.write;
  let r;
  try {
    r = await pool.call('app', 'hello', NO_INPUT);
    await new Promise((resolve) => setTimeout(resolve, 50)); // a worker's stdout would arrive asynchronously
  } finally {
    process.stdout.write = write;
  }
  t.same(u32s(r.output, 4), [18, BADF, BADF, 0], 'nwritten counts both iovecs; fds 0 and 5 are EBADF');
  t.same(r.logs, [
    { level: 'info', message: 'hello from stdout' },
    { level: 'info', message: 'partial line' },
    { level: 'info', message: 'second line' },
    { level: 'warn', message: 'oops on stderr' },
    { level: 'info', message: 'tail without newline' },
  ]);
  t.equal(r.usage.log_lines, 5);
  t.notOk(seen.some((s) => s.includes('hello from stdout') || s.includes('oops')), 'nothing reached process.stdout');
});

t.test('stdout obeys the log level, line cap, line length and counts host calls', async (t) => {
  await load('app-warn', app, ['chatty', 'hello'], { logLevel: 'warn' });
  const quiet = await pool.call('app-warn', 'hello', NO_INPUT);
  t.same(quiet.logs, [{ level: 'warn', message: 'oops on stderr' }], 'stdout (info) is below the plugin log level');

  const long = await pool.call('app', 'hello', NO_INPUT, { maxLogLineBytes: 8 });
  t.equal(long.logs[0]?.message, 'hello fr… [truncated 9 bytes]', 'a long line is truncated like a log line');
  t.equal(long.logs[3]?.message, 'oops on … [truncated 6 bytes]', 'the CR of a CRLF is not counted');
  t.equal(long.usage.logs_truncated, 5);

  // (last: it spends the plugin's log-rate tokens)
  const r = await pool.call('app', 'chatty', NO_INPUT, { maxLogLines: 10, maxLogLineBytes: 10 });
  t.equal(r.logs.length, 10);
  t.same(r.logs[0], { level: 'info', message: 'line' });
  t.equal(r.usage.logs_dropped, 291, '300 stdout lines and 1 stderr line, 10 kept');
  t.ok(r.usage.host_calls >= 302, `each WASI call counted (${r.usage.host_calls})`);

});

t.test('environment and arguments are empty', async (t) => {
  const r = await pool.call('app', 'env', NO_INPUT);
  t.same(u32s(r.output, 8), [0, 0, 0, 0, 0, 0, 0, 0]);
});

t.test('random_get fills guest memory with fresh bytes; out-of-bounds buffers are EFAULT', async (t) => {
  const a = await pool.call('app', 'rand', NO_INPUT);
  const b = await pool.call('app', 'rand', NO_INPUT);
  t.same(u32s(a.output, 2), [0, FAULT]);
  const hex = (x: Uint8Array) => Buffer.from(x.subarray(8)).toString('hex');
  t.not(hex(a.output), hex(b.output), 'two calls get different bytes');
  t.not(hex(a.output), '0'.repeat(64));
});

t.test('clocks: realtime and monotonic at 1 µs; other clocks are EINVAL', async (t) => {
  const before = BigInt(Date.now()) * 1_000_000n;
  const a = await pool.call('app', 'clock', NO_INPUT);
  const b = await pool.call('app', 'clock', NO_INPUT);
  t.same(u32s(a.output, 4, 24), [0, 0, 0, INVAL]);
  const real = u64(a.output, 0);
  t.ok(real >= before - 1_000_000_000n && real <= BigInt(Date.now()) * 1_000_000n + 1_000_000_000n, 'realtime is the wall clock');
  t.ok(u64(b.output, 8) >= u64(a.output, 8), 'monotonic does not go back');
  t.equal(u64(a.output, 16), 1000n, 'resolution 1 µs');
});

t.test('no file system: no preopens, path_open fails, stdio is a character device, stdin is at EOF', async (t) => {
  const r = await pool.call('app', 'fs', NO_INPUT);
  const [prestat, open3, open0, fdstat1, fdstat3, read0, nread, filetype] = u32s(r.output, 8);
  t.equal(prestat, BADF);
  t.equal(open3, BADF, 'path_open on fd 3: there is no such directory');
  t.equal(open0, NOTDIR, 'path_open on stdin: not a directory');
  t.equal(fdstat1, 0);
  t.equal(filetype, 2, 'stdout is a character device');
  t.equal(u64(r.output, 32), (1n << 6n) | (1n << 27n), 'stdout rights: fd_write and poll');
  t.equal(fdstat3, BADF);
  t.same([read0, nread], [0, 0], 'reading stdin returns end of file');
});

t.test('poll_oneoff sleeps on a clock subscription and reports it', async (t) => {
  const r = await pool.call('app', 'sleep', NO_INPUT);
  const [errno, nevents] = u32s(r.output, 2);
  t.same([errno, nevents], [0, 1]);
  t.equal(u64(r.output, 8), 42n, 'the event carries the subscription userdata');
  t.equal(u32s(r.output, 1, 16)[0], 0, 'event errno 0, type clock');
  t.ok(r.usage.wall_ms >= 29, `slept ${r.usage.wall_ms.toFixed(1)} ms`);
});

t.test('poll_oneoff answers descriptor subscriptions at once: stdin hangs up, other fds are EBADF', async (t) => {
  const r = await pool.call('app', 'poll_fds', NO_INPUT);
  const [errno, nevents, ud0, ev0 = 0, flags0, ud1, ev1 = 0] = u32s(r.output, 7);
  t.same([errno, nevents], [0, 2], 'the 10 s clock is not reported');
  t.same([ud0, ev0 & 0xffff, ev0 >>> 16, flags0], [1, 0, 1, 1], 'stdin: no error, type fd_read, hang-up');
  t.same([ud1, ev1 & 0xffff, ev1 >>> 16], [2, BADF, 2], 'fd 9: EBADF, type fd_write');
  t.ok(r.usage.wall_ms < 5000, 'no sleep');
});

t.test('every WASI call counts against the host-call budget', async (t) => {
  const e = await pool.call('app', 'spin', NO_INPUT, { maxHostCalls: 500 }).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.match((e as { details: unknown }).details, { budget: 'host_calls', limit: 500 });
});

t.test('proc_exit stops the call with TYRUM_ERR_SANDBOX_PLUGIN_ERROR and the exit code, even code 0', async (t) => {
  for (const [fn, code] of [['exit3', 3], ['exit0', 0]] as const) {
    const e = await pool.call('app', fn, NO_INPUT).catch((e: unknown) => e);
    t.ok(isTyrumError(e, 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR'), `${fn}: coded error`);
    t.equal(sandboxReason(e), 'plugin_error');
    t.match((e as { details: unknown }).details, { exit_code: code, plugin: 'app', export: fn });
    t.match((e as Error).message, `plugin exited with code ${code} (WASI proc_exit)`);
  }
  const r = await pool.call('app', 'init_state', NO_INPUT);
  t.equal(u32s(r.output, 1)[0], 1, 'the next call runs on a fresh instance, initialised once');
});

t.test('every preview1 function can be imported, and none grants anything', async (t) => {
  t.equal(WASI_PREVIEW1_FUNCTIONS.size, 46);
  // Call each with descriptor 7 (never open) where it takes one, zeros elsewhere.
  const fdParams: Record<string, number[]> = { path_symlink: [2], path_link: [0, 4], path_rename: [0, 3], fd_renumber: [0, 1] };
  const skip = new Set(['proc_exit']);
  const names = [...WASI_PREVIEW1_SIGNATURES.keys()].filter((n) => !skip.has(n));
  const imports = [...WASI_PREVIEW1_SIGNATURES].map(([name, sig]) => {
    const [p = '', r = ''] = sig.split('>');
    const ty = (s: string) => [...s].map((c) => (c === 'I' ? 'i64' : 'i32')).join(' ');
    return `(import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${ty(p)}) (result ${ty(r)})))`.replace(' (result )', '').replace('(param )', '');
  });
  const calls = names.map((name, i) => {
    const [p = ''] = (WASI_PREVIEW1_SIGNATURES.get(name) as string).split('>');
    const fds = fdParams[name] ?? (name.startsWith('fd_') || name.startsWith('path_') || name.startsWith('sock_') ? [0] : []);
    const args = [...p].map((c, j) => (c === 'I' ? '(i64.const 0)' : `(i32.const ${fds.includes(j) ? 7 : 0})`)).join(' ');
    return `(i32.store (i32.const ${1024 + 4 * i}) (call $${name} ${args}))`;
  });
  const wasm = compile(`(module ${imports.join('\n')} ${KERNEL}
    (memory (export "memory") 1)
    (func (export "probe") (result i32) ${calls.join('\n')} (call $out (i32.const 1024) (i32.const ${4 * names.length})) (i32.const 0)))`);
  const loaded = await load('all-wasi', wasm, ['probe']);
  t.equal(loaded.imports.filter((i) => i.startsWith('wasi_snapshot_preview1.')).length, 46);
  const errnos = u32s((await pool.call('all-wasi', 'probe', NO_INPUT)).output, names.length);
  const got = Object.fromEntries(names.map((n, i) => [n, errnos[i]]));
  const expected: Record<string, number> = {
    args_get: 0,
    args_sizes_get: 0,
    environ_get: 0,
    environ_sizes_get: 0,
    clock_res_get: 0,
    clock_time_get: 0,
    random_get: 0,
    sched_yield: 0,
    proc_raise: NOSYS,
    poll_oneoff: INVAL, // no subscriptions
  };
  for (const n of names) if (!(n in expected)) expected[n] = BADF; // every descriptor-taking function: fd 7 is not open
  t.same(got, expected);
});

t.test('stdio descriptors get the answers of a character device', async (t) => {
  const cases: [string, string, number][] = [
    ['fd_seek', '(i32.const 1) (i64.const 0) (i32.const 0) (i32.const 1024)', SPIPE],
    ['fd_tell', '(i32.const 1) (i32.const 1024)', SPIPE],
    ['fd_readdir', '(i32.const 0) (i32.const 1024) (i32.const 8) (i64.const 0) (i32.const 1040)', NOTDIR],
    ['fd_close', '(i32.const 1)', NOSYS],
    ['fd_fdstat_set_flags', '(i32.const 1) (i32.const 1)', 0],
    ['sock_send', '(i32.const 1) (i32.const 1024) (i32.const 0) (i32.const 0) (i32.const 1040)', NOTSOCK],
    ['fd_filestat_get', '(i32.const 2) (i32.const 1024)', 0],
  ];
  const sig = (n: string) => {
    const [p = '', r = ''] = (WASI_PREVIEW1_SIGNATURES.get(n) as string).split('>');
    const ty = (s: string) => [...s].map((c) => (c === 'I' ? 'i64' : 'i32')).join(' ');
    return `(param ${ty(p)}) (result ${ty(r)})`;
  };
  const wasm = compile(`(module
    ${cases.map(([n]) => `(import "wasi_snapshot_preview1" "${n}" (func $${n} ${sig(n)}))`).join('\n')}
    ${KERNEL}
    (memory (export "memory") 1)
    (func (export "probe") (result i32)
      ${cases.map(([n, args], i) => `(i32.store (i32.const ${2048 + 4 * i}) (call $${n} ${args}))`).join('\n')}
      (call $out (i32.const 2048) (i32.const ${4 * cases.length})) (i32.const 0)))`);
  await load('stdio-wasi', wasm, ['probe']);
  const errnos = u32s((await pool.call('stdio-wasi', 'probe', NO_INPUT)).output, cases.length);
  t.same(Object.fromEntries(cases.map(([n], i) => [n, errnos[i]])), Object.fromEntries(cases.map(([n, , e]) => [n, e])));
});

t.test('WASI beyond the preview1 shim is refused at load with the import named', async (t) => {
  const other = compile(`(module
    (import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32)))
    (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "tyrum:wasi/preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "run") (result i32) (i32.const 0)))`);
  const e = await load('wasi-unknown', other, ['run']).catch((e: unknown) => e);
  t.ok(isTyrumError(e, 'TYRUM_ERR_SANDBOX_MODULE_REJECTED'));
  t.match((e as { details: unknown }).details, {
    check: 'imports',
    imports: ['wasi_snapshot_preview1.fd_frobnicate', 'wasi_unstable.fd_write', 'tyrum:wasi/preview1.fd_write'],
  });
  t.match((e as Error).message, 'wasi_snapshot_preview1.fd_frobnicate (function): not a WASI preview1 function');
  t.match((e as Error).message, /wasi_unstable\.fd_write \(function\): WASI is not available to plugins under "wasi_unstable"/);

  const wrongSig = compile(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "run") (result i32) (i32.const 0)))`);
  const s = await load('wasi-sig', wrongSig, ['run']).catch((e: unknown) => e);
  t.equal(sandboxReason(s), 'module_rejected');
  t.match((s as { details: unknown }).details, { check: 'imports', imports: ['wasi_snapshot_preview1.fd_write', 'wasi_snapshot_preview1.clock_time_get'] });
  t.match((s as Error).message, 'wasi_snapshot_preview1.fd_write: declared (i32, i32) -> i32, WASI preview1 defines (i32, i32, i32, i32) -> i32');
  t.match((s as Error).message, 'wasi_snapshot_preview1.clock_time_get: declared (i32, i32, i32) -> i32, WASI preview1 defines (i32, i64, i32) -> i32');

  const lifecycle = await load('wasi-start', app, ['_start']).catch((e: unknown) => e);
  t.match((lifecycle as { details: unknown }).details, { check: 'exports', lifecycle: ['_start'] });
  t.equal(await pool.call('wasi-start', '_start', NO_INPUT).then(() => 'ok', (e: unknown) => sandboxReason(e)), 'not_loaded');
});

t.test('proc_exit during _initialize fails the load with the exit code', async (t) => {
  const wasm = compile(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_initialize") (call $proc_exit (i32.const 2)))
    (func (export "run") (result i32) (i32.const 0)))`);
  const e = await load('wasi-init-exit', wasm, ['run']).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'plugin_error');
  t.match((e as { details: unknown }).details, { exit_code: 2 });
});

t.test('a WASM MCP server built for WASI (describe/call) loads through the MCP path unchanged', async (t) => {
  const describe = JSON.stringify({ tools: [{ name: 'roll', description: 'Roll a die.', inputSchema: { type: 'object', properties: {} } }] });
  const result = JSON.stringify({ content: [{ type: 'text', text: 'rolled' }] });
  const esc = (s: string) => s.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
  const wasm = compile(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    ${KERNEL}
    (memory (export "memory") 1)
    (data (i32.const 4096) "${esc(describe)}")
    (data (i32.const 8192) "${esc(result)}")
    (data (i32.const 12288) "describe called\\n")
    (func (export "_initialize")
      (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
      (drop (call $random_get (i32.const 16) (i32.const 8))))
    (func (export "describe") (result i32)
      (i32.store (i32.const 64) (i32.const 12288))
      (i32.store (i32.const 68) (i32.const 16))
      (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))
      (call $out (i32.const 4096) (i32.const ${describe.length}))
      (i32.const 0))
    (func (export "call") (result i32)
      (drop (call $random_get (i32.const 16) (i32.const 8)))
      (call $out (i32.const 8192) (i32.const ${result.length}))
      (i32.const 0)))`);
  await load('mcp-wasi', wasm, WASM_MCP_EXPORTS);
  const logs: string[] = [];
  const conn = new WasmMcpConnection({
    serverName: 'dice',
    call: (exportName, input, { timeoutMs }) =>
      pool.call('mcp-wasi', exportName, input, { wallMs: timeoutMs }).then((r) => {
        logs.push(...r.logs.map((l) => l.message));
        return r.output;
      }),
  });
  const tools = await conn.listTools({ timeoutMs: 5000 });
  t.same(tools, [{ name: 'roll', description: 'Roll a die.', inputSchema: { type: 'object', properties: {} } }]);
  t.same(logs, ['describe called'], "the module's stdout went to the plugin log");
  const r = await conn.callTool('roll', {}, { timeoutMs: 5000 });
  t.same(r.content, [{ type: 'text', text: 'rolled' }]);
});
