/**
 * What the execution engine reports about each governed call (its stages, its end), and the one
 * observer that turns it into metrics, a trace and the ids its log lines carry. No third-party
 * import here: metrics come in through GatewayMetrics (core/telemetry/metrics.ts), traces through
 * a CallTracer that only core/telemetry/tracing.ts creates.
 */
import type { GatewayMetrics, CallOutcome, CallStage } from './metrics.js';
import { budgetKind } from './metrics.js';
import type { LogFields } from './context.js';

export type SpanAttributes = Record<string, string | number | boolean>;

/** A call's span, as the tracer keeps it; times are performance.now() readings. */
export interface CallSpan {
  readonly traceId: string;
  readonly spanId: string;
  child(name: string, start: number, end: number, attributes?: SpanAttributes): void;
  end(end: number, attributes: SpanAttributes, error: string | null): void;
}

export interface CallTracer {
  /** A new call span, child of `traceparent` (an incoming W3C header value) when given. */
  startCall(start: number, attributes: SpanAttributes, traceparent: string | null): CallSpan;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

/** The stages the engine times itself (total is the whole call). */
export type TimedStage = Exclude<CallStage, 'total'>;

/** One governed call being observed (ExecutionEngine creates it when a step enters the pipeline). */
export interface CallRecord {
  /** The ids this call's log lines carry (core/telemetry/context.ts). */
  readonly fields: LogFields;
  /** A stage ran from `start` to `end` (performance.now() ms); a stage may run more than once (two commits). */
  stage(stage: TimedStage, start: number, end: number): void;
  /** The attempt being made (set before the sandbox stage). */
  attempt(n: number): void;
  /** How the policy decided (a span attribute). */
  policy(decision: string): void;
  /** The call ended. `error`: the code it failed with, and details for the budget kind. */
  end(outcome: CallOutcome, error?: { code: string; details?: Record<string, unknown> } | null): void;
}

export interface CallInfo {
  run_id: string;
  step: number;
  tool_id: string;
  kind: string;
}

export interface CallObserver {
  /** A step enters the pipeline; `traceparent`: the incoming parent, when the caller sent one. */
  begin(info: CallInfo, traceparent: string | null): CallRecord;
}

const STAGE_SPAN: Record<TimedStage, string> = { policy: 'tyrum.policy', sandbox: 'tyrum.sandbox', commit: 'tyrum.commit' };

class ObservedCall implements CallRecord {
  readonly fields: LogFields;
  private readonly t0 = performance.now();
  private readonly spent: Partial<Record<TimedStage, number>> = {};
  private readonly span: CallSpan | null;
  private n: number | null = null;
  private decision: string | null = null;
  private ended = false;

  constructor(
    private readonly metrics: GatewayMetrics,
    tracer: CallTracer | null,
    info: CallInfo,
    traceparent: string | null,
  ) {
    this.span = tracer ? tracer.startCall(this.t0, { 'tyrum.run_id': info.run_id, 'tyrum.step': info.step, 'tyrum.tool_id': info.tool_id, 'tyrum.run_kind': info.kind }, traceparent) : null;
    this.fields = this.span ? { run_id: info.run_id, step: info.step, trace_id: this.span.traceId, span_id: this.span.spanId } : { run_id: info.run_id, step: info.step };
  }

  stage(stage: TimedStage, start: number, end: number): void {
    // A commit the call started (the early answer of a slow read-only call) may land after its end.
    if (this.ended) return;
    this.spent[stage] = (this.spent[stage] ?? 0) + (end - start) / 1000;
    this.span?.child(STAGE_SPAN[stage], start, end, this.n !== null && stage !== 'policy' ? { 'tyrum.attempt': this.n } : undefined);
  }

  attempt(n: number): void {
    this.n = n;
    this.fields.attempt = n;
  }

  policy(decision: string): void {
    this.decision = decision;
  }

  end(outcome: CallOutcome, error?: { code: string; details?: Record<string, unknown> } | null): void {
    if (this.ended) return;
    this.ended = true;
    const t1 = performance.now();
    this.metrics.call(outcome, { ...this.spent, total: (t1 - this.t0) / 1000 });
    const kind = error ? budgetKind(error.code, error.details) : null;
    if (kind !== null) this.metrics.budgetHit(kind);
    if (this.span) {
      const attrs: SpanAttributes = { 'tyrum.outcome': outcome };
      if (this.n !== null) attrs['tyrum.attempt'] = this.n;
      if (this.decision !== null) attrs['tyrum.policy_decision'] = this.decision;
      if (error) attrs['tyrum.error_code'] = error.code;
      if (kind !== null) attrs['tyrum.budget'] = kind;
      this.span.end(t1, attrs, error ? error.code : null);
    }
  }
}

/** The observer the gateway gives its engine: metrics always, a trace when a tracer is configured. */
export function callObserver(metrics: GatewayMetrics, tracer: CallTracer | null): CallObserver {
  return { begin: (info, traceparent) => new ObservedCall(metrics, tracer, info, traceparent) };
}

/**
 * `observer` with every method made harmless: an observer that throws (a bug, a tracer that
 * breaks) must never change how a call ends or leave its caller unanswered. A throw is dropped,
 * `warn` told about the first one (with the method that threw); a `begin` that throws yields a
 * record that records nothing, so the call still runs, with its run id and step in its log lines.
 */
export function guardedObserver(observer: CallObserver, warn: (message: string, data: Record<string, unknown>) => void): CallObserver {
  let warned = false;
  const guard = <A extends unknown[]>(method: string, fn: (...args: A) => void) => (...args: A): void => {
    try {
      fn(...args);
    } catch (e) {
      if (warned) return;
      warned = true;
      warn('the call observer threw; its reports are dropped and the calls go on (warned once)', { method, err: e instanceof Error ? e.message : String(e) });
    }
  };
  return {
    begin(info, traceparent) {
      let rec: CallRecord;
      let fields: LogFields;
      try {
        rec = observer.begin(info, traceparent);
        fields = rec.fields;
      } catch (e) {
        guard('begin', () => {
          throw e;
        })();
        return { fields: { run_id: info.run_id, step: info.step }, stage() {}, attempt() {}, policy() {}, end() {} };
      }
      return {
        fields,
        stage: guard('stage', (stage: TimedStage, start: number, end: number) => rec.stage(stage, start, end)),
        attempt: guard('attempt', (n: number) => rec.attempt(n)),
        policy: guard('policy', (decision: string) => rec.policy(decision)),
        end: guard('end', (outcome: CallOutcome, error?: { code: string; details?: Record<string, unknown> } | null) => rec.end(outcome, error)),
      };
    },
  };
}
