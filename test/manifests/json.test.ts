// The strict JSON reader: exactly RFC 8259, plus refusals that JSON.parse does not make.
import t from 'tap';
import fc from 'fast-check';
import { JsonReadError, plainJsonProblem, readJson } from '../../manifests/json.js';

const read = (s: string, maxDepth = 64) => readJson(s, { maxDepth });
function error(s: string, maxDepth = 64): JsonReadError {
  try {
    read(s, maxDepth);
  } catch (e) {
    if (e instanceof JsonReadError) return e;
    throw e;
  }
  throw new Error(`accepted: ${s}`);
}

t.test('it reads what JSON.parse reads, to the same value', async (t) => {
  for (const s of ['{}', '[]', '0', '-0.5e+3', '"\\u00e9\\n\\"\\/"', 'true', 'null', '{"a":[1,{"b":null}],"c":"d"}', ' \t\n{ "x" : 1 }\r\n', '"\u{1F600}"', '1E400'.slice(0, 4)]) {
    t.same(read(s), JSON.parse(s), s);
  }
});

t.test('property: any JSON value JSON.stringify writes is read back equal', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
      const text = JSON.stringify(v);
      // fast-check may generate "__proto__" or "constructor" keys; those are refused by design.
      if (/"(__proto__|constructor|prototype)":/.test(text)) return true;
      const got = read(text);
      return JSON.stringify(got) === text;
    }),
    { numRuns: 300 },
  );
  t.pass();
});

t.test('syntax errors carry line, column and the JSON pointer where they happened', async (t) => {
  const e = error('{\n  "a": {\n    "b": [1, 2,]\n  }\n}');
  t.equal(e.line, 3);
  t.equal(e.column, 16);
  t.equal(e.pointer, '/a/b/2');
  t.match(e.message, /unexpected "]" at line 3, column 16 \(\/a\/b\/2\)/);
  t.match(error('{"a" 1}').message, /expected ':' after a key, found "1" at line 1, column 6/);
  t.match(error('{"a":1').message, /expected ',' or '}', found end of input/);
  t.match(error('"abc').message, /unterminated string/);
  t.match(error('"a\u0001b"').message, /control character in string/);
  t.match(error('"\\x41"').message, /invalid escape/);
  t.match(error('{"a":1} x').message, /unexpected "x" after the document/);
  t.match(error('01').message, /after the document/);
  t.match(error('NaN').message, /unexpected "N"/);
  t.match(error('1e999').message, /number out of range/);
  t.match(error("{'a':1}").message, /expected a quoted key/);
});

t.test('duplicate keys and prototype-altering keys are refused', async (t) => {
  t.match(error('{"a":1,"b":2,"a":3}').message, /duplicate key "a" at line 1, column 14/);
  for (const k of ['__proto__', 'constructor', 'prototype']) t.match(error(`{"x":{"${k}":{}}}`).message, new RegExp(`key "${k}" is not allowed`));
});

t.test('nesting beyond the cap is refused while parsing, so deep input cannot overflow the stack', async (t) => {
  t.same(read('[[[]]]', 3), [[[]]]);
  t.match(error('[[[[]]]]', 3).message, /nesting deeper than 3 levels at line 1, column 4 \(\/0\/0\/0\)/);
  const start = performance.now();
  const e = error('['.repeat(1_000_000), 128);
  t.match(e.message, /nesting deeper than 128 levels/);
  t.ok(performance.now() - start < 5000, 'a hang guard, not a benchmark');
});

t.test('a leading byte-order mark is ignored', async (t) => {
  t.same(read('\ufeff{"a":1}'), { a: 1 });
});

t.test('plainJsonProblem finds non-JSON values, forbidden keys, deep nesting and cycles', async (t) => {
  t.equal(plainJsonProblem({ a: [1, 'x', null, true, { b: 2 }] }, 8), null);
  t.same(plainJsonProblem({ a: [1, undefined] }, 8), { pointer: '/a/1', message: 'is a undefined, not JSON' });
  t.same(plainJsonProblem({ a: new Date(0) }, 8), { pointer: '/a', message: 'is not a plain object' });
  t.same(plainJsonProblem({ a: Infinity }, 8), { pointer: '/a', message: 'is not a finite number' });
  t.same(plainJsonProblem(JSON.parse('{"__proto__":1}'), 8), { pointer: '/__proto__', message: 'key "__proto__" is not allowed' });
  const cyc: unknown[] = [];
  cyc.push(cyc);
  t.match(plainJsonProblem(cyc, 8)?.message ?? '', /nests deeper than 8 levels/);
});
