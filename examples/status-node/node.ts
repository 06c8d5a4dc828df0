/**
 * status-node: a third-party node in a page, written with the SDK's TyrumNode. It lets an agent
 * read this machine's status through the gateway's governed pipeline: `fs.list` lists the
 * virtual files `status/load`, `status/memory` and `status/uptime`, `fs.read` reads one, each
 * answer in the built-in contract's shape (schemas/src/capabilities.ts) with evidence. Nothing on
 * disk is read. Readiness is a probe: the node reports itself not ready while the file named by
 * STATUS_NODE_PAUSE_FILE exists.
 *
 *   export TYRUM_NODE_ENROLLMENT_TOKEN=$(tyrum node enroll)
 *   node --import tsx examples/status-node/node.ts [STATE_DIR]
 *   tyrum node list; tyrum node approve PAIRING_ID --allow fs.list,fs.read --read-only fs.list,fs.read --name status
 *   tyrum tool call node.fs.read@status --args '{"path":"status/load"}'
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { cpus, freemem, hostname, loadavg, totalmem, uptime } from 'node:os';
import { join } from 'node:path';
import { FileCredentialStore, NodeTaskError, TyrumNode, loadOrCreateDeviceKey, type NodeCapability } from '../../sdk/index.js';

/** The virtual files, computed when read. */
export const FILES: Readonly<Record<string, () => string>> = {
  'status/load': () => `${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cpus)\n`,
  'status/memory': () => `${Math.round(freemem() / 2 ** 20)} MiB free of ${Math.round(totalmem() / 2 ** 20)} MiB\n`,
  'status/uptime': () => `${Math.round(uptime())} s\n`,
};

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function statusCapabilities(pauseFile?: string): NodeCapability[] {
  const ready = () => (pauseFile !== undefined && existsSync(pauseFile) ? `paused: ${pauseFile} exists` : true);
  return [
    {
      id: 'fs.list',
      version: '1',
      ready,
      handler: async (args) => {
        if ((args.path ?? '.') !== '.' && args.path !== 'status') throw new NodeTaskError('not_found', `no directory ${String(args.path)}`);
        const now = new Date().toISOString();
        const entries = Object.keys(FILES).map((p) => ({ name: args.path === 'status' ? p.slice('status/'.length) : p, type: 'file' as const, size: FILES[p]!().length, mtime: now }));
        return { output: { entries, truncated: false }, evidence: { listed: entries.length } };
      },
    },
    {
      id: 'fs.read',
      version: '1',
      ready,
      handler: async (args, ctx) => {
        const file = typeof args.path === 'string' ? FILES[args.path] : undefined;
        if (!file) throw new NodeTaskError('not_found', `no file ${String(args.path)} (try ${Object.keys(FILES).join(', ')})`);
        await ctx.evidence({ step: 'sampled', at: new Date().toISOString() });
        const content = file();
        return { output: { content, encoding: 'utf8', size: content.length, sha256: sha256(content), truncated: false }, evidence: { host: hostname(), sha256: sha256(content) } };
      },
    },
  ];
}

async function main(): Promise<void> {
  const state = process.argv[2] ?? join(process.cwd(), '.status-node');
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const node = new TyrumNode({
    url: process.env.TYRUM_URL ?? 'ws://127.0.0.1:8788/ws',
    deviceKey: await loadOrCreateDeviceKey(join(state, 'device.key')),
    ...(process.env.TYRUM_NODE_ENROLLMENT_TOKEN ? { enrollmentToken: process.env.TYRUM_NODE_ENROLLMENT_TOKEN } : {}),
    credentials: new FileCredentialStore(join(state, 'node-token')),
    capabilities: statusCapabilities(process.env.STATUS_NODE_PAUSE_FILE),
    device: { label: `status of ${hostname()}` },
    onStatus: (s) => console.error('status-node:', JSON.stringify(s)),
  });
  await node.start();
  process.once('SIGINT', () => void node.stop('interrupted'));
  process.once('SIGTERM', () => void node.stop('interrupted'));
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) void main();
