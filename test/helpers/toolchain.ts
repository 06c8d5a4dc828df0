// Optional toolchains some tests need. The C plugin path (examples/hello-c, `tyrum plugin new --lang
// c`, the C PDK) needs clang and wasm-ld with the wasm32 target, which a fresh machine lacks; those
// tests skip with this reason (tap counts and prints skips; CI installs clang and lld and runs them).
import { execFileSync } from 'node:child_process';

let clang: string | null | undefined;

/** Why C plugins cannot be built here (no clang or no wasm-ld), or null when they can. */
export function clangMissing(): string | null {
  if (clang !== undefined) return clang;
  clang = probe('clang', 'clang is not installed (apt-get install clang lld)') ?? probe('wasm-ld', 'wasm-ld is not installed (apt-get install lld)');
  return clang;
}

/** The reason to skip a C test, or false to run it (the form tap's `skip` option takes). */
export function skipWithoutClang(): string | false {
  const missing = clangMissing();
  return missing === null ? false : `needs the C toolchain: ${missing}`;
}

function probe(bin: string, reason: string): string | null {
  try {
    execFileSync(bin, ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return reason;
  }
}
