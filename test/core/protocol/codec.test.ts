/**
 * decodeFrame fed raw bytes, no sockets (TESTPLAN E2): every hostile frame is refused with a
 * reason instead of throwing, limits hold exactly at their edges, and no frame can reach
 * Object.prototype.
 */
import t from 'tap';
import fc from 'fast-check';
import { decodeFrame, type CodecLimits } from '../../../core/protocol/codec.js';
import { DEFAULT_LIMITS } from '../../../core/config/index.js';

const DEFAULTS: CodecLimits = { maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes, maxJsonDepth: DEFAULT_LIMITS.maxJsonDepth, maxJsonNodes: DEFAULT_LIMITS.maxJsonNodes };
const FORBIDDEN = ['__proto__', 'constructor', 'prototype'] as const;

const bytes = (...parts: Array<string | number[]>): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

function decodeText(text: string, limits: CodecLimits = DEFAULTS) {
  return decodeFrame(Buffer.from(text, 'utf8'), false, limits);
}

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

const protoSnapshot = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');

t.test('a well-formed JSON text frame decodes to its value', async (t) => {
  t.same(decodeText('{"request_id":"r1","type":"ping","payload":{}}'), { ok: true, value: { request_id: 'r1', type: 'ping', payload: {} } });
  t.same(decodeText('{"s":"é 😀 \\ud83d\\ude00"}'), { ok: true, value: { s: 'é 😀 😀' } }, 'multi-byte UTF-8 and escaped surrogate pairs are fine');
  t.same(decodeText('null'), { ok: true, value: null }, 'a scalar root is a valid JSON value (the envelope schema rejects it later)');
});

t.test('a binary frame is refused even when its bytes are valid JSON', async (t) => {
  const r = decodeFrame(bytes('{"request_id":"r","type":"ping","payload":{}}'), true, DEFAULTS);
  t.equal(r.ok, false);
  t.match(r, { reason: /binary/ });
});

t.test('a frame one byte over max_frame_bytes is refused and one exactly at it is accepted', async (t) => {
  const limits = { ...DEFAULTS, maxFrameBytes: 1024 };
  const exact = '"' + 'a'.repeat(1022) + '"';
  t.equal(Buffer.byteLength(exact), 1024);
  t.same(decodeText(exact, limits), { ok: true, value: 'a'.repeat(1022) });
  const over = '"' + 'a'.repeat(1023) + '"';
  t.match(decodeText(over, limits), { ok: false, reason: /exceeds 1024 bytes/ });
  // The size check counts bytes, not characters: 512 two-byte characters plus quotes is 1026 bytes.
  t.match(decodeText('"' + 'é'.repeat(512) + '"', limits), { ok: false, reason: /exceeds/ });
});

t.test('invalid UTF-8 is refused, whatever the JSON around it', async (t) => {
  const cases: Array<[string, number[]]> = [
    ['0xff 0xfe (UTF-16 BOM bytes)', [0xff, 0xfe]],
    ['a lone continuation byte', [0x80]],
    ['overlong two-byte "/"', [0xc0, 0xaf]],
    ['overlong two-byte NUL (modified UTF-8)', [0xc0, 0x80]],
    ['overlong three-byte "/"', [0xe0, 0x80, 0xaf]],
    ['overlong four-byte "/"', [0xf0, 0x80, 0x80, 0xaf]],
    ['lone high surrogate U+D800 encoded as CESU-8', [0xed, 0xa0, 0x80]],
    ['lone low surrogate U+DC00 encoded as CESU-8', [0xed, 0xb0, 0x80]],
    ['a surrogate pair (U+1F600) encoded as CESU-8', [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['a truncated three-byte sequence', [0xe2, 0x82]],
  ];
  for (const [name, bad] of cases) {
    t.match(decodeFrame(bytes('{"request_id":"', bad, '","type":"ping","payload":{}}'), false, DEFAULTS), { ok: false, reason: /UTF-8/ }, `inside a string: ${name}`);
    t.match(decodeFrame(Uint8Array.from(bad), false, DEFAULTS), { ok: false, reason: /UTF-8/ }, `alone: ${name}`);
  }
});

t.test('text that is not JSON is refused', async (t) => {
  for (const text of ['', ' ', '{', '{"a":1', '{"a":1}}', "{'a':1}", '{a:1}', '[1,]', 'NaN', 'undefined', '{"a":01}', '"\u0001"', '{"a":1} x']) {
    t.match(decodeText(text), { ok: false, reason: /JSON/ }, JSON.stringify(text));
  }
});

t.test('nesting exactly at max_json_depth is accepted and one level deeper is refused', async (t) => {
  t.equal(decodeText(nested(DEFAULTS.maxJsonDepth)).ok, true, 'arrays at the limit');
  t.match(decodeText(nested(DEFAULTS.maxJsonDepth + 1)), { ok: false, reason: /deeper than 64/ }, 'arrays one deeper');
  const objects = (n: number) => '{"a":'.repeat(n - 1) + '{}' + '}'.repeat(n - 1);
  t.equal(decodeText(objects(DEFAULTS.maxJsonDepth)).ok, true, 'objects at the limit');
  t.match(decodeText(objects(DEFAULTS.maxJsonDepth + 1)), { ok: false, reason: /deeper/ }, 'objects one deeper');
  const small = { ...DEFAULTS, maxJsonDepth: 2 };
  t.equal(decodeText('{"payload":{"a":1}}', small).ok, true, 'scalars inside the deepest allowed container do not count as a level');
  t.equal(decodeText('{"payload":{"a":[]}}', small).ok, false);
});

t.test('a 10,000-deep (and a 200,000-deep) array is refused without throwing: the walk does not recurse', async (t) => {
  const deep = nested(10_000);
  t.doesNotThrow(() => decodeText(deep));
  t.match(decodeText(deep), { ok: false, reason: /deeper/ });
  // With the depth limit out of the way the walker itself must visit every level iteratively.
  const huge = nested(200_000);
  let r: ReturnType<typeof decodeText> | undefined;
  t.doesNotThrow(() => {
    r = decodeText(huge, { maxFrameBytes: 1 << 20, maxJsonDepth: 1_000_000, maxJsonNodes: 1_000_000 });
  });
  t.equal(r?.ok, true, 'a 200,000-level walk completes');
});

t.test('more JSON values than max_json_nodes is refused and exactly that many is accepted', async (t) => {
  const limits = { ...DEFAULTS, maxJsonNodes: 16 };
  const arr = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => i));
  t.equal(decodeText(arr(15), limits).ok, true, 'root + 15 elements = 16 values');
  t.match(decodeText(arr(16), limits), { ok: false, reason: /more than 16 JSON values/ }, 'root + 16 elements = 17 values');
  const obj = (n: number) => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])));
  t.equal(decodeText(obj(15), limits).ok, true, 'an object with 15 keys');
  t.match(decodeText(obj(16), limits), { ok: false, reason: /more than 16/ }, 'an object with 16 keys');
  // The default limit with a flat object of 100,000 keys (plus the root) is one too many.
  const many = '{' + Array.from({ length: DEFAULTS.maxJsonNodes }, (_, i) => `"${i.toString(36)}":0`).join(',') + '}';
  t.ok(Buffer.byteLength(many) < DEFAULTS.maxFrameBytes, 'the frame itself is within the size limit');
  t.match(decodeText(many), { ok: false, reason: /more than 100000/ });
});

t.test('__proto__, constructor and prototype keys are refused at any depth and pollute nothing', async (t) => {
  const before = protoSnapshot();
  for (const key of FORBIDDEN) {
    const k = JSON.stringify(key);
    const frames = [
      `{${k}:{"polluted":true}}`,
      `{"request_id":"r","type":"ping","payload":{${k}:{"polluted":true}}}`,
      `{"payload":{"a":[1,{"b":{${k}:{"polluted":true}}}]}}`,
      `[[[{${k}:1}]]]`,
      `{"a":1,${k}:null}`,
      // The escaped spelling is the same key once parsed.
      `{${JSON.stringify(key).replace(/_|o/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)}:{"polluted":true}}`,
    ];
    for (const f of frames) t.match(decodeText(f), { ok: false, reason: `forbidden key "${key}"` }, f);
  }
  t.same(decodeText('{"proto":1,"__proto":2,"constructors":3,"Prototype":4,"a":{"__PROTO__":5}}').ok, true, 'near-miss spellings are ordinary keys');
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal(protoSnapshot(), before, 'Object.prototype is unchanged');
});

// ---- properties ----------------------------------------------------------------------------

/** Reference check of a parsed value, written from the contract (root depth 1, scalars do not nest). */
function oracle(v: unknown, limits: CodecLimits): 'ok' | 'deep' | 'nodes' | 'forbidden' {
  let nodes = 0;
  let deep = false;
  let forbidden = false;
  const walk = (x: unknown, depth: number): void => {
    nodes++;
    if (x === null || typeof x !== 'object') return;
    if (depth > limits.maxJsonDepth) deep = true;
    if (Array.isArray(x)) x.forEach((y) => walk(y, depth + 1));
    else
      for (const k of Object.keys(x)) {
        if ((FORBIDDEN as readonly string[]).includes(k)) forbidden = true;
        walk((x as Record<string, unknown>)[k], depth + 1);
      }
  };
  walk(v, 1);
  if (nodes > limits.maxJsonNodes) return 'nodes';
  if (deep) return 'deep';
  if (forbidden) return 'forbidden';
  return 'ok';
}

/** JSON text built by hand so forbidden keys can appear as real keys at any depth. */
type Tree = { leaf: unknown } | { arr: Tree[] } | { obj: Array<[string, Tree]> };
const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ leaf: fc.oneof(fc.constant(null), fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ unit: 'binary', maxLength: 8 })) }),
    fc.record({ arr: fc.array(tie('tree'), { maxLength: 5 }) }),
    fc.record({ obj: fc.array(fc.tuple(fc.oneof({ weight: 6, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }, { weight: 1, arbitrary: fc.constantFrom(...FORBIDDEN) }), tie('tree')), { maxLength: 5 }) }),
  ),
}));
function serialize(x: Tree): string {
  if ('leaf' in x) return JSON.stringify(x.leaf);
  if ('arr' in x) return `[${x.arr.map(serialize).join(',')}]`;
  return `{${x.obj.map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(',')}}`;
}

const smallLimits = fc.record({ maxFrameBytes: fc.integer({ min: 1, max: 4096 }), maxJsonDepth: fc.integer({ min: 2, max: 8 }), maxJsonNodes: fc.integer({ min: 16, max: 200 }) });

t.test('property: decodeFrame never throws on arbitrary bytes, text or binary', async (t) => {
  const before = protoSnapshot();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), fc.boolean(), smallLimits, (data, isBinary, limits) => {
      const r = decodeFrame(data, isBinary, limits);
      if (isBinary || data.byteLength > limits.maxFrameBytes) return r.ok === false;
      return typeof r.ok === 'boolean' && (r.ok || typeof r.reason === 'string');
    }),
    { numRuns: 2000 },
  );
  t.equal(protoSnapshot(), before);
  t.pass('no input threw');
});

t.test('property: arbitrary JSON values decode exactly as the contract says, and pollute nothing', async (t) => {
  const before = protoSnapshot();
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 10 }), smallLimits, (value, limits) => {
      const text = JSON.stringify(value);
      const data = Buffer.from(text, 'utf8');
      const r = decodeFrame(data, false, limits);
      if (data.byteLength > limits.maxFrameBytes) return r.ok === false && /exceeds/.test(r.reason);
      const expected = oracle(JSON.parse(text), limits);
      if (expected === 'ok') return r.ok === true && JSON.stringify(r.value) === text;
      return r.ok === false;
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(tree, smallLimits, (x, limits) => {
      const text = serialize(x);
      const r = decodeFrame(Buffer.from(text, 'utf8'), false, { ...limits, maxFrameBytes: 1 << 20 });
      const expected = oracle(JSON.parse(text), limits);
      if (({} as Record<string, unknown>).polluted !== undefined || protoSnapshot() !== before) return false;
      // Which limit is reported first may differ from the oracle's order; what matters is that
      // nothing over a limit, and no forbidden key, is ever waved through.
      return expected === 'ok' ? r.ok === true : r.ok === false;
    }),
    { numRuns: 2000 },
  );
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal(protoSnapshot(), before, 'Object.prototype is unchanged');
});
