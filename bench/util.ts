/** Small measuring helpers shared by the bench files. */

export interface Stats {
  p50: number;
  p99: number;
  mean: number;
  n: number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { p50: q(0.5), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), n: s.length };
}

/**
 * Up to `n` sequential calls after up to 200 warm-up calls; per-call latency in ms. Stops early
 * once `capMs` have passed (the returned `n` says how many were measured).
 */
export async function sequential(n: number, fn: () => Promise<unknown>, capMs = Infinity): Promise<Stats> {
  const warmEnd = performance.now() + capMs / 10;
  for (let i = 0; i < Math.min(200, n) && performance.now() < warmEnd; i++) await fn();
  const out: number[] = [];
  const end = performance.now() + capMs;
  for (let i = 0; i < n && (i === 0 || performance.now() < end); i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return stats(out);
}

export interface LoopResult {
  /** Completed calls per second. */
  rate: number;
  calls: number;
  lat: Stats;
}

/** Closed loop for `seconds` (after a short warm-up): each caller sends its next call when the previous one answers. */
export async function closedLoop(callers: Array<() => Promise<unknown>>, seconds: number): Promise<LoopResult> {
  const run = async (ms: number, lat: number[] | null) => {
    const end = performance.now() + ms;
    let calls = 0;
    const t0 = performance.now();
    await Promise.all(
      callers.map(async (fn) => {
        while (performance.now() < end) {
          const s = performance.now();
          await fn();
          lat?.push(performance.now() - s);
          calls++;
        }
      }),
    );
    return { calls, elapsed: performance.now() - t0 };
  };
  await run(Math.min(500, seconds * 250), null);
  const lat: number[] = [];
  const { calls, elapsed } = await run(seconds * 1000, lat);
  return { rate: (calls / elapsed) * 1000, calls, lat: stats(lat) };
}
