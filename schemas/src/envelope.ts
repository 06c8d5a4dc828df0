/** Request, response and event envelopes (PROTOCOL.md "Envelopes"). */
import { Type } from '@sinclair/typebox';
import { Strict, WIRE_ERROR_CODES, RequestId, RequestType, IsoTime, JsonObject } from './common.js';

export const WireErrorCodeSchema = Type.Union(WIRE_ERROR_CODES.map((c) => Type.Literal(c)), { description: 'Stable wire error code.' });

export const ErrorBody = Strict({
  code: WireErrorCodeSchema,
  message: Type.String({ maxLength: 4096 }),
  details: Type.Optional(JsonObject),
});

export const RequestEnvelope = Strict({ request_id: RequestId, type: RequestType, payload: JsonObject });

export const ResponseOk = Strict({ request_id: RequestId, type: Type.String({ maxLength: 64 }), ok: Type.Literal(true), result: JsonObject });
export const ResponseError = Strict({ request_id: RequestId, type: Type.String({ maxLength: 64 }), ok: Type.Literal(false), error: ErrorBody });
export const ResponseEnvelope = Type.Union([ResponseOk, ResponseError]);

export const EventEnvelope = Strict({ event_id: Type.String({ minLength: 1, maxLength: 128 }), type: RequestType, occurred_at: IsoTime, payload: JsonObject });
