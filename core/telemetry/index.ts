/**
 * Observability (docs/observability.md): Prometheus metrics (always on, served at GET /metrics to
 * a token with `operator.metrics`, `operator.read` or `operator.admin`), OpenTelemetry traces (off unless `telemetry.otlp_endpoint` is
 * set) and the ids log lines carry. The third-party libraries stay behind this module: prom-client
 * in metrics.ts, @opentelemetry/* in tracing.ts, which is imported only when tracing is on.
 */
import type { Telemetry as TelemetryConfig } from '../config/index.js';
import { GatewayMetrics } from './metrics.js';
import { callObserver, type CallObserver, type CallTracer } from './calls.js';

export { GatewayMetrics, budgetKind, CALL_OUTCOMES, CALL_STAGES, BUDGET_KINDS, type MetricSources, type StoreCounters, type CallOutcome, type CallStage, type BudgetKind } from './metrics.js';
export { callObserver, guardedObserver, type CallObserver, type CallRecord, type CallInfo, type CallTracer, type CallSpan, type TimedStage } from './calls.js';
export { withLogFields, logFields, withIncomingTrace, incomingTrace, parseTraceparent, detached, suspendScopes, type LogFields } from './context.js';

export interface Telemetry {
  readonly metrics: GatewayMetrics;
  /** Null when tracing is off. */
  readonly tracer: CallTracer | null;
  readonly calls: CallObserver;
  /** Flushes and stops the trace exporter, stops the event-loop monitor. */
  close(): Promise<void>;
}

/** Metrics, and a tracer when the config names an OTLP endpoint (only then is OpenTelemetry loaded). */
export async function openTelemetry(config: Readonly<TelemetryConfig>, version: string): Promise<Telemetry> {
  const metrics = new GatewayMetrics();
  let tracer: CallTracer | null = null;
  if (config.otlpEndpoint !== null) {
    const { createTracer } = await import('./tracing.js');
    tracer = createTracer({ endpoint: config.otlpEndpoint, serviceName: config.serviceName, sampleRatio: config.sampleRatio, version });
  }
  return {
    metrics,
    tracer,
    calls: callObserver(metrics, tracer),
    async close() {
      try {
        await tracer?.shutdown();
      } finally {
        metrics.close();
      }
    },
  };
}
