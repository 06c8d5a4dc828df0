/**
 * OpenTelemetry traces: the only module that imports @opentelemetry/*. Loaded (dynamic import, by
 * core/telemetry/index.ts) only when `telemetry.otlp_endpoint` is set, so a gateway with tracing
 * off loads no OpenTelemetry code at all.
 *
 * A governed call is one span, `tyrum.call`, with a child per pipeline stage (`tyrum.policy`,
 * `tyrum.sandbox`, `tyrum.commit`). Children are recorded when the stage has ended, with its
 * measured start and end, so the engine holds no span object across its awaits. Attributes are
 * ids and enums (tool id, run id, step, attempt, outcome, policy decision, error code): never
 * arguments, results or secrets. Spans go out in batches (OTLP over HTTP, JSON); `shutdown`
 * flushes what is left, and the gateway calls it when it closes.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { parseTraceparent } from './context.js';
import type { CallTracer, CallSpan, SpanAttributes } from './calls.js';

export interface TracingOptions {
  endpoint: string;
  serviceName: string;
  sampleRatio: number;
  version: string;
}

/** Epoch milliseconds of a performance.now() reading. */
const epoch = (t: number) => performance.timeOrigin + t;

class OtelCallSpan implements CallSpan {
  readonly traceId: string;
  readonly spanId: string;
  private readonly ctx: Context;

  constructor(
    private readonly tracer: ReturnType<BasicTracerProvider['getTracer']>,
    private readonly span: Span,
  ) {
    const sc = span.spanContext();
    this.traceId = sc.traceId;
    this.spanId = sc.spanId;
    this.ctx = trace.setSpan(ROOT_CONTEXT, span);
  }

  child(name: string, start: number, end: number, attributes?: SpanAttributes): void {
    this.tracer.startSpan(name, { startTime: epoch(start), kind: SpanKind.INTERNAL, ...(attributes ? { attributes: attributes as Attributes } : {}) }, this.ctx).end(epoch(end));
  }

  end(end: number, attributes: SpanAttributes, error: string | null): void {
    this.span.setAttributes(attributes as Attributes);
    if (error !== null) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    this.span.end(epoch(end));
  }
}

/** A tracer exporting to `endpoint`. */
export function createTracer(o: TracingOptions): CallTracer {
  const exporter = new OTLPTraceExporter({ url: o.endpoint });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': o.serviceName, 'service.version': o.version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(o.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 })],
  });
  const tracer = provider.getTracer('tyrum', o.version);
  return {
    startCall(start, attributes, traceparent) {
      const parent = parseTraceparent(traceparent ?? undefined);
      const ctx = parent ? trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true }) : ROOT_CONTEXT;
      const span = tracer.startSpan('tyrum.call', { startTime: epoch(start), kind: SpanKind.INTERNAL, attributes: attributes as Attributes }, ctx);
      return new OtelCallSpan(tracer, span);
    },
    async shutdown() {
      await provider.shutdown();
    },
  };
}
