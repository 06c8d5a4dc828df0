import t from 'tap';
import { MAX_ID_LENGTH, parseFrame } from '../../../sdk/client/frames.js';

const at = '2026-01-02T03:04:05.678Z';

t.test('well-formed responses, events and requests are classified with their fields', async (t) => {
  t.same(parseFrame('{"request_id":"r1","type":"ping","ok":true,"result":{"pong":true}}'), {
    kind: 'response',
    frame: { request_id: 'r1', type: 'ping', ok: true, result: { pong: true } },
  });
  t.same(parseFrame('{"request_id":"r2","type":"run.get","ok":false,"error":{"code":"not_found","message":"no run","details":{"id":"x"}}}'), {
    kind: 'response',
    frame: { request_id: 'r2', type: 'run.get', ok: false, error: { code: 'not_found', message: 'no run', details: { id: 'x' } } },
  });
  t.same(parseFrame(JSON.stringify({ event_id: 'e1', type: 'run.updated', occurred_at: at, payload: {} })), {
    kind: 'event',
    frame: { event_id: 'e1', type: 'run.updated', occurred_at: at, payload: {} },
  });
  t.same(parseFrame('{"request_id":"g1","type":"task.execute","payload":{"a":1}}'), {
    kind: 'request',
    frame: { request_id: 'g1', type: 'task.execute', payload: { a: 1 } },
  });
});

t.test('malformed frames are reported as invalid instead of throwing', async (t) => {
  const bad = [
    '',
    'not json',
    '[]',
    'null',
    '"text"',
    '{}',
    '{"request_id":"r","type":"ping","ok":"yes","result":{}}',
    '{"request_id":"r","type":"ping","ok":true,"result":[]}',
    '{"request_id":"r","type":"ping","ok":true,"result":{},"extra":1}',
    '{"request_id":"r","type":"ping","ok":false,"error":{"code":"x"}}',
    '{"request_id":"r","type":"ping","ok":false,"error":{"code":"","message":"m"}}',
    '{"request_id":"r","type":"ping","ok":false,"error":{"code":"x","message":"m","details":[1]}}',
    '{"request_id":"r","type":"ping","ok":false,"error":{"code":"x","message":"m","stack":"..."}}',
    '{"request_id":"","type":"ping","ok":true,"result":{}}',
    '{"request_id":7,"type":"ping","ok":true,"result":{}}',
    JSON.stringify({ event_id: 'e', type: 't', occurred_at: 'yesterday', payload: {} }),
    JSON.stringify({ event_id: 'e', type: 't', occurred_at: '2026-13-45T99:00:00Z', payload: {} }),
    JSON.stringify({ event_id: 'e', type: 't', occurred_at: at, payload: null }),
    JSON.stringify({ event_id: 'e', type: 't', occurred_at: at, payload: {}, seq: 1 }),
    JSON.stringify({ event_id: 'x'.repeat(MAX_ID_LENGTH + 1), type: 't', occurred_at: at, payload: {} }),
    '{"request_id":"g","type":"task.execute","payload":"x"}',
    '{"request_id":"g","type":"task.execute"}',
    '{"request_id":"g","type":"task.execute","payload":{},"__proto__":{}}',
  ];
  for (const text of bad) {
    const r = parseFrame(text);
    t.equal(r.kind, 'invalid', text.slice(0, 80));
  }
});

t.test('an invalid frame reason quotes at most a short prefix of an unknown key', async (t) => {
  const r = parseFrame(JSON.stringify({ request_id: 'r', type: 't', ok: true, result: {}, ['k'.repeat(1000)]: 1 }));
  t.equal(r.kind, 'invalid');
  if (r.kind === 'invalid') t.ok(r.reason.length < 120, r.reason);
});
