import t from 'tap';
import { canonicalJson } from '../../../core/util/canonical-json.js';

t.test('RFC 8785: keys sorted by UTF-16 code units, no whitespace', async (t) => {
  t.equal(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 0, y: -0 } }), '{"a":[true,null,"x"],"b":1,"c":{"y":0,"z":0}}');
  // The RFC's sorting example: code-unit order puts the surrogate pair before U+FB33... and digits before letters.
  t.equal(canonicalJson({ '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' }),
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}');
});

t.test('RFC 8785: numbers use ECMAScript serialization', async (t) => {
  // eslint-disable-next-line no-loss-of-precision -- the RFC's own vector: the literal is meant to round.
  t.equal(canonicalJson([333333333.33333329, 1e30, 4.5, 2e-3, 0.000001, 1e-7, 1e21, 1e20]), '[333333333.3333333,1e+30,4.5,0.002,0.000001,1e-7,1e+21,100000000000000000000]');
  t.throws(() => canonicalJson(Number.NaN), /non-finite/);
  t.throws(() => canonicalJson(Infinity), /non-finite/);
});

t.test('undefined members are dropped, undefined array items become null, other types refused', async (t) => {
  t.equal(canonicalJson({ a: undefined, b: [undefined] }), '{"b":[null]}');
  t.throws(() => canonicalJson(10n), /unsupported type bigint/);
});

t.test('key order of the input does not change the output', async (t) => {
  t.equal(canonicalJson({ x: 1, y: { b: 2, a: 1 } }), canonicalJson({ y: { a: 1, b: 2 }, x: 1 }));
});
