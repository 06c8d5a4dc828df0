/**
 * A bench client in a process of its own, so what it measures is the gateway's answer time and not
 * the client's share of the gateway's event loop. bench/plugins.ts starts it with
 * `node --import tsx bench/ws-client.ts`, the job in BENCH_CLIENT_JOB (JSON) and the token in
 * BENCH_CLIENT_TOKEN (never argv), and reads one JSON line from stdout.
 */
import { generateKeyPairSync } from 'node:crypto';
import { TyrumClient, type JsonObject } from '../sdk/index.js';
import { closedLoop, sequential } from './util.js';

export interface ClientJob {
  url: string;
  request: { type: string; payload: JsonObject };
  /** `sequential`: n calls on one connection; `loop`: closed loop, one connection per caller. */
  mode: 'sequential' | 'loop';
  n?: number;
  /** Stop a sequential run after this long (ms). */
  capMs?: number;
  concurrency?: number;
  seconds?: number;
}

const job = JSON.parse(process.env.BENCH_CLIENT_JOB ?? '{}') as ClientJob;
const token = process.env.BENCH_CLIENT_TOKEN ?? '';
const clients: TyrumClient[] = [];
try {
  const count = job.mode === 'loop' ? (job.concurrency ?? 1) : 1;
  for (let i = 0; i < count; i++) {
    const c = new TyrumClient({ url: job.url, token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
    await c.connect();
    clients.push(c);
  }
  const call = (c: TyrumClient) => () => c.request(job.request.type, job.request.payload);
  const result = job.mode === 'loop' ? await closedLoop(clients.map(call), job.seconds ?? 1) : await sequential(job.n ?? 1000, call(clients[0]!), job.capMs ?? Infinity);
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
}
