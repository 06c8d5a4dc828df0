/**
 * Prometheus metrics: the only module that imports prom-client.
 *
 * One registry per gateway (never prom-client's global one), served at GET /metrics by the edge.
 * Names are `tyrum_*` with their unit in the name; labels are low-cardinality enums only (a stage,
 * an outcome, a role, a budget kind): never a run id, a tool's arguments or anything secret.
 *
 * What the hot path pays: a call records its stages into pre-bound histogram children (no label
 * lookup) and one counter; frames bump a counter. Everything else is read at scrape time from the
 * parts that already keep it (the store's commit counters, the sandbox pool's queues, the engine's
 * active runs, the sessions), and the two figures that need the database (queued runs, pending
 * approvals) are one indexed COUNT each, per scrape. The list, with meanings, is in
 * docs/observability.md (a test keeps the two equal).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/** Pipeline stages a governed call is timed in; `total` spans the call from its policy decision to its durable end. */
export const CALL_STAGES = ['policy', 'sandbox', 'commit', 'total'] as const;
export type CallStage = (typeof CALL_STAGES)[number];

/** How a governed call ended (the `outcome` label). */
export const CALL_OUTCOMES = ['succeeded', 'failed', 'denied', 'approval', 'retry', 'unknown', 'cancelled', 'error'] as const;
export type CallOutcome = (typeof CALL_OUTCOMES)[number];

/** Kinds of sandbox budget a call can run out of (the `kind` label). */
export const BUDGET_KINDS = ['time', 'output', 'input', 'host_calls', 'kernel_memory', 'vars', 'egress', 'kv', 'other'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

/**
 * The budget a failed call ran out of, from its error code and `details.budget` (sandbox/errors.ts),
 * or null when the failure was not a budget.
 */
export function budgetKind(code: string, details: Record<string, unknown> | undefined): BudgetKind | null {
  switch (code) {
    case 'TYRUM_ERR_SANDBOX_TIMEOUT':
      return 'time';
    case 'TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE':
      return 'output';
    case 'TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE':
      return 'input';
    case 'TYRUM_ERR_SANDBOX_BUDGET':
      break;
    default:
      return null;
  }
  switch (details?.budget) {
    case 'host_calls':
      return 'host_calls';
    case 'alloc_bytes':
    case 'kernel_blocks':
      return 'kernel_memory';
    case 'var_bytes':
    case 'var name':
      return 'vars';
    case 'egress_bytes':
      return 'egress';
    case 'kv_value':
    case 'kv key':
      return 'kv';
    default:
      return 'other';
  }
}

/** What the store reports (core/store CommitStats; a second store implementation reports the same). */
export interface StoreCounters {
  commits: number;
  units: number;
  syncs: number;
}

/** The figures read at scrape time. Each must be cheap: it runs on every scrape. */
export interface MetricSources {
  store(): StoreCounters;
  /** Statements sent to PostgreSQL, each a blocking round trip (0 on SQLite). */
  storeRoundTrips(): number;
  /** Units written but not yet durable (in the open group or waiting for their fdatasync). */
  commitQueue(): number;
  /** Jobs waiting for a sandbox worker. */
  sandboxQueue(): number;
  /** Runs queued in the database, waiting for an engine. */
  queuedRuns(): number;
  /** Runs this gateway's engine is driving now. */
  activeRuns(): number;
  /** Approvals waiting for a decision. */
  pendingApprovals(): number;
  /** Handshaken WebSocket connections by role. */
  connections(): { client: number; node: number };
}

/** The event-loop monitor's sampling interval (ms). */
const LOOP_RESOLUTION_MS = 10;

let processRegistry: Registry | null = null;

/**
 * prom-client's default (process) metrics, collected once per process and shared by every gateway
 * registry of it. collectDefaultMetrics starts a GC PerformanceObserver and an enabled event-loop
 * histogram that prom-client (15.x) gives no way to stop: collected per gateway, each gateway
 * started and closed in one process (the tests, an embedding) would leave one of each behind. They
 * describe the process, not a gateway, so one set serves all; it lives as long as the process.
 */
function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Latency buckets in seconds: 50 µs to 10 s (a policy decision is microseconds, a sandbox call or an fsync milliseconds). */
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly contentType: string = this.registry.contentType;
  private readonly stageChildren = new Map<string, { observe(v: number): void }>();
  private readonly outcomeChildren = new Map<string, { inc(): void }>();
  private readonly budgetHits: Counter<'kind'>;
  private readonly framesIn: Counter;
  private readonly framesOut: Counter;
  private readonly commitSeconds: Histogram;
  private readonly syncSeconds: Histogram;
  private readonly loopDelay: IntervalHistogram;
  private sources: MetricSources | null = null;

  constructor() {
    const registers = [this.registry];
    const stages = new Histogram({ name: 'tyrum_call_stage_duration_seconds', help: 'Time a governed tool call spent in each pipeline stage (policy, sandbox, commit) and in all (total), by how the call ended.', labelNames: ['stage', 'outcome'], buckets: LATENCY_BUCKETS, registers });
    const calls = new Counter({ name: 'tyrum_tool_calls_total', help: 'Governed tool calls (steps through policy, sandbox and commit), by how they ended.', labelNames: ['outcome'], registers });
    for (const outcome of CALL_OUTCOMES) {
      for (const stage of CALL_STAGES) this.stageChildren.set(`${stage}/${outcome}`, stages.labels(stage, outcome));
      this.outcomeChildren.set(outcome, calls.labels(outcome));
      // Exported from the start at 0 (prom-client shows a labelled series only once it is touched).
      calls.labels(outcome).inc(0);
    }
    this.budgetHits = new Counter({ name: 'tyrum_sandbox_budget_hits_total', help: 'Tool calls that ran out of a sandbox budget, by kind (time, output, input, host_calls, kernel_memory, vars, egress, kv, other).', labelNames: ['kind'], registers });
    for (const k of BUDGET_KINDS) this.budgetHits.labels(k).inc(0);
    this.framesIn = new Counter({ name: 'tyrum_ws_frames_received_total', help: 'WebSocket frames received from peers.', registers });
    this.framesOut = new Counter({ name: 'tyrum_ws_frames_sent_total', help: 'WebSocket frames sent to peers.', registers });
    this.commitSeconds = new Histogram({ name: 'tyrum_store_commit_duration_seconds', help: 'Time of each group COMMIT (writing the group to the write-ahead log).', buckets: LATENCY_BUCKETS, registers });
    this.syncSeconds = new Histogram({ name: 'tyrum_store_sync_duration_seconds', help: 'Time of each fdatasync of the write-ahead log that makes committed groups durable.', buckets: LATENCY_BUCKETS, registers });

    const src = () => this.sources;
    const counterFrom = (name: string, help: string, read: (s: MetricSources) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const s = src();
          if (!s) return;
          // The store keeps the count; the counter shows it (reset + inc, so nothing is counted twice).
          this.reset();
          this.inc(read(s));
        },
      });
    counterFrom('tyrum_store_commits_total', 'Group commits (transactions) the store made durable.', (s) => s.store().commits);
    counterFrom('tyrum_store_units_committed_total', 'Units (one writer\'s records) carried by those commits.', (s) => s.store().units);
    counterFrom('tyrum_store_fdatasyncs_total', 'fdatasync calls the store made on the write-ahead log.', (s) => s.store().syncs);
    counterFrom('tyrum_store_round_trips_total', 'Statements the store sent to PostgreSQL, each a round trip the gateway waits for (0 on SQLite, whose statements run in-process).', (s) => s.storeRoundTrips());
    const gaugeFrom = (name: string, help: string, read: (s: MetricSources) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = src();
          if (s) this.set(read(s));
        },
      });
    gaugeFrom('tyrum_commit_queue_units', 'Units written but not yet durable (open group plus groups waiting for their fdatasync).', (s) => s.commitQueue());
    gaugeFrom('tyrum_sandbox_queue_jobs', 'Sandbox jobs (calls, loads) waiting for a worker.', (s) => s.sandboxQueue());
    gaugeFrom('tyrum_runs_queued', 'Runs queued in the database, waiting for an engine.', (s) => s.queuedRuns());
    gaugeFrom('tyrum_runs_active', 'Runs this gateway\'s engine is driving now.', (s) => s.activeRuns());
    gaugeFrom('tyrum_approvals_pending', 'Approvals waiting for a decision.', (s) => s.pendingApprovals());
    new Gauge({
      name: 'tyrum_connections',
      help: 'Handshaken WebSocket connections, by role (client, node).',
      labelNames: ['role'],
      registers,
      collect() {
        const s = src();
        if (!s) return;
        const c = s.connections();
        this.set({ role: 'client' }, c.client);
        this.set({ role: 'node' }, c.node);
      },
    });
    this.loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.loopDelay.enable();
    const loop = this.loopDelay;
    new Gauge({
      name: 'tyrum_event_loop_delay_seconds',
      help: `Event-loop delay since the previous scrape (perf_hooks.monitorEventLoopDelay, sampled every ${LOOP_RESOLUTION_MS} ms, that interval subtracted), at the 50th and 99th percentile and the maximum (quantile="1").`,
      labelNames: ['quantile'],
      registers,
      collect() {
        // The histogram records the time between its timer's runs, the sampling interval included
        // (an idle loop reads ~10.1 ms): the delay is what exceeds the interval.
        const v = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns - LOOP_RESOLUTION_MS * 1e6) / 1e9 : 0);
        this.set({ quantile: '0.5' }, v(loop.percentile(50)));
        this.set({ quantile: '0.99' }, v(loop.percentile(99)));
        this.set({ quantile: '1' }, v(loop.max));
        loop.reset();
      },
    });
    // prom-client's process metrics, from the collectors of this process (see processMetrics).
    // (getMetricsAsArray returns the metric objects themselves; its declared type is narrower.)
    for (const m of processMetrics().getMetricsAsArray()) this.registry.registerMetric(m as unknown as Metric);
  }

  /** Where the scrape-time figures come from (set once the parts exist). */
  setSources(sources: MetricSources): void {
    this.sources = sources;
  }

  /** A finished governed call: its stage times (seconds; a stage it did not reach is left out) and outcome. */
  call(outcome: CallOutcome, seconds: Partial<Record<CallStage, number>>): void {
    for (const stage of CALL_STAGES) {
      const v = seconds[stage];
      if (v !== undefined) this.stageChildren.get(`${stage}/${outcome}`)!.observe(v);
    }
    this.outcomeChildren.get(outcome)!.inc();
  }

  budgetHit(kind: BudgetKind): void {
    this.budgetHits.labels(kind).inc();
  }

  frameIn(): void {
    this.framesIn.inc();
  }

  frameOut(): void {
    this.framesOut.inc();
  }

  /** The store's latency hooks (core/store StoreObserver). */
  readonly storeObserver = {
    committed: (seconds: number) => this.commitSeconds.observe(seconds),
    synced: (seconds: number) => this.syncSeconds.observe(seconds),
  };

  /** The exposition text (Prometheus text format 0.0.4). */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Names of the metrics this registry exports (the doc test compares them with docs/observability.md). */
  names(): string[] {
    return this.registry.getMetricsAsArray().map((m) => m.name);
  }

  close(): void {
    this.loopDelay.disable();
    this.registry.clear();
  }
}
