/**
 * A one-off look at an external server: start or reach it, list its tools, record them (pinned
 * and screened, exactly as the gateway does), and stop. The CLI uses it so an operator can
 * review a server's tools right after `tyrum mcp add`, whether or not the gateway runs.
 */
import { connectMcp } from './client.js';
import type { McpRegistry, ObserveSummary } from './registry.js';
import type { Store } from '../store/index.js';

export interface ProbeResult {
  tools: number;
  summary: ObserveSummary;
  server_version: string | null;
}

export async function probeServer(registry: McpRegistry, store: Store, name: string, opts: { timeoutMs?: number; maxMessageBytes?: number } = {}): Promise<ProbeResult> {
  registry.get(name); // a coded not_found for an unknown name
  const row = store.mcp.getServer(name)!;
  const resolved = registry.resolve(row, null);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const conn = await connectMcp(resolved, { connectTimeoutMs: timeoutMs, maxMessageBytes: opts.maxMessageBytes ?? 4 * 1024 * 1024 });
  try {
    const defs = await conn.listTools({ timeoutMs });
    const summary = await registry.observe(name, defs);
    registry.recordHealth(name, { status: 'probed', tools: defs.length, refused: summary.refused.length });
    return { tools: defs.length, summary, server_version: conn.serverVersion?.() ?? null };
  } finally {
    await conn.close();
  }
}
