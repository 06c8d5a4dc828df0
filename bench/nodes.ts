/**
 * `npm run bench -- nodes` (issue 12): the round trip of a no-op node capability through the full
 * pipeline (tool.invoke over WebSocket: contract check, policy, a durable run, task.execute to an
 * in-process TyrumNode over loopback, the answer checked against the contract, evidence kept)
 * beside the same call to a WASM plugin tool (text-utils.word_count), both read-only, sequential
 * p50/p99 and the ratio. Figures, not assertions.
 *
 *   BENCH_NODE_CALLS=1000   sequential calls per path, capped by BENCH_NODE_SEQ_CAP_S=3
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { startGateway } from '../core/runtime.js';
import { TyrumClient, TyrumNode, type CredentialStore } from '../sdk/index.js';
import { reportTarget, sequential, fmtMs } from './util.js';

const CALLS = Number(process.env.BENCH_NODE_CALLS ?? 1000);
const CAP_MS = Number(process.env.BENCH_NODE_SEQ_CAP_S ?? 3) * 1000;
const WASM_DIR = resolve(fileURLToPath(new URL('../plugins/text-utils/build/', import.meta.url)));
const ACTOR = { kind: 'cli', user: 'bench' };

class MemCredentials implements CredentialStore {
  token: string | null = null;
  load(): string | null {
    return this.token;
  }
  save(t: string): void {
    this.token = t;
  }
  clear(): void {
    this.token = null;
  }
}

export async function nodesBench(): Promise<void> {
  console.log('\n## Nodes: a no-op node capability vs a WASM plugin tool, through the full pipeline\n');
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-nodes-'));
  const gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
  let client: TyrumClient | null = null;
  let node: TyrumNode | null = null;
  try {
    const url = gw.url;
    const inst = await gw.plugins.install(WASM_DIR, ACTOR);
    await gw.plugins.grant(inst.plugin.id, { allRequested: true }, ACTOR);
    await gw.plugins.enable(inst.plugin.id, ACTOR);
    // A node paired for sys.noop, allowed read-only so the default policy runs it without an approval.
    const { token: enroll } = await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'bench' });
    const creds = new MemCredentials();
    let paired!: () => void;
    const pairedP = new Promise<void>((r) => (paired = r));
    node = new TyrumNode({
      url,
      deviceKey: generateKeyPairSync('ed25519').privateKey,
      enrollmentToken: enroll,
      credentials: creds,
      capabilities: [{ id: 'sys.noop', version: '1', handler: async () => ({ output: { ok: true }, evidence: {} }) }],
      device: { label: 'bench' },
      onStatus: (s) => {
        if (s.state === 'connected' && s.with === 'node_token') paired();
      },
    });
    client = new TyrumClient({ url, token: gw.bootstrapToken!, deviceKey: generateKeyPairSync('ed25519').privateKey });
    await client.connect();
    await node.start();
    const listed = (await client.request('pairing.list', { state: 'awaiting_human' })) as { pairings: Array<{ pairing_id: string }> };
    const pending = listed.pairings[0];
    if (!pending) throw new Error('the bench node did not ask to be paired');
    await client.request('pairing.approve', { pairing_id: pending.pairing_id, trust_level: 'local', capability_allowlist: [{ id: 'sys.noop' }], read_only: ['sys.noop'], node_name: 'bench' });
    await pairedP;
    const c = client;
    const call = async (tool_id: string, args: Record<string, unknown>) => {
      const r = (await c.request('tool.invoke', { tool_id, args, wait_ms: 10_000 })) as { state: string };
      if (r.state !== 'succeeded') throw new Error(`${tool_id}: ${JSON.stringify(r)}`);
    };
    await call('node.sys.noop@bench', {});
    const nodeStats = await sequential(CALLS, () => call('node.sys.noop@bench', {}), CAP_MS);
    const wasmStats = await sequential(CALLS, () => call('text-utils.word_count', { text: 'a b c' }), CAP_MS);
    const ratio = nodeStats.p50 / wasmStats.p50;
    console.log('| path | sequential p50 | p99 | calls |');
    console.log('|---|---|---|---|');
    console.log(`| tool.invoke node.sys.noop@bench (task.execute to a TyrumNode) | ${fmtMs(nodeStats.p50)} | ${fmtMs(nodeStats.p99)} | ${nodeStats.n} |`);
    console.log(`| tool.invoke text-utils.word_count (WASM plugin, the baseline) | ${fmtMs(wasmStats.p50)} | ${fmtMs(wasmStats.p99)} | ${wasmStats.n} |`);
    console.log(`\nratio node / WASM (p50): ${ratio.toFixed(2)}×`);
    reportTarget('nodes.noop', { figure: fmtMs(nodeStats.p50), baseline: `WASM plugin tool: ${fmtMs(wasmStats.p50)}`, ratio: `${ratio.toFixed(2)}×`, met: null });
  } finally {
    await node?.stop();
    await client?.close();
    await gw.close();
    rmSync(home, { recursive: true, force: true });
  }
}
