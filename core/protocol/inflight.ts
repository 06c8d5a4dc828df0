/**
 * The requests one token may have in flight: one budget (`limits.max_inflight_requests`) shared by
 * every WebSocket connection of the token and every `/mcp` request item made with it, so opening
 * more connections or packing calls into a JSON-RPC batch buys no more concurrent work. The
 * gateway creates one limiter and hands it to its WebSocket sessions and to the MCP endpoint.
 */
export class InflightLimiter {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`max must be a positive integer, got ${max}`);
  }

  /**
   * Takes one slot of `tokenId`'s budget; returns the function that gives it back (calling it
   * again does nothing), or null when all `max` slots are in use (nothing was taken).
   */
  acquire(tokenId: string): (() => void) | null {
    const n = this.counts.get(tokenId) ?? 0;
    if (n >= this.max) return null;
    this.counts.set(tokenId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(tokenId) ?? 1) - 1;
      if (left > 0) this.counts.set(tokenId, left);
      else this.counts.delete(tokenId);
    };
  }
}
