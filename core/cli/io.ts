/**
 * Where a CLI command writes: results to `out` (stdout), diagnostics to `err` (stderr). Its own
 * module so the commands need not import main.ts, which imports them.
 */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}
