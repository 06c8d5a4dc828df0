// TESTPLAN H2: hostile tool schemas (huge, deeply nested, remote references, catastrophic
// regular expressions) are refused at registration, quickly, without blocking the event loop.
import t from 'tap';
import { join } from 'node:path';
import { isTyrumError } from '../../core/errors/index.js';
import { assertSafeJsonSchema, compiledSchemaCount, compilePluginSchema, forgetPluginSchema, patternHazard, readPluginSource, toIssues } from '../../manifests/index.js';
import { measureBlocking, set, writePlugin } from './helpers.js';

function refusal(schema: unknown, label = 'contributes.tools[1].input_schema'): string {
  try {
    assertSafeJsonSchema(schema, label);
  } catch (e) {
    if (isTyrumError(e, 'TYRUM_ERR_MANIFEST_INVALID')) return e.message;
    throw e;
  }
  return '';
}

const deep = (depth: number): Record<string, unknown> => {
  let s: Record<string, unknown> = { type: 'string' };
  for (let i = 0; i < depth; i++) s = { type: 'object', properties: { a: s } };
  return s;
};

const HOSTILE: Array<[string, () => unknown, RegExp]> = [
  ['a 1 MB schema', () => ({ type: 'object', properties: Object.fromEntries(Array.from({ length: 20000 }, (_, i) => [`p${i}`, { type: 'string', description: 'x'.repeat(30) }])) }), /schema is \d+ bytes serialized, above the 65536-byte limit/],
  ['a schema nested 1000 deep', () => deep(1000), /schema nests deeper than 32 levels at \/properties\/a/],
  ['a cyclic object', () => { const s: Record<string, unknown> = { type: 'object' }; s.not = s; return s; }, /nests deeper than 32 levels/],
  ['a remote $ref', () => ({ type: 'object', properties: { q: { $ref: 'http://169.254.169.254/latest/meta-data' } } }), /\$ref at \/properties\/q\/\$ref is not local/],
  ['a relative file $ref', () => ({ $ref: 'other.json#/x' }), /\$ref at \/\$ref is not local/],
  ['a dangling local $ref', () => ({ $ref: '#/definitions/missing' }), /schema does not compile: can't resolve reference/],
  ['an $id', () => ({ $id: 'https://evil.example/s', type: 'object' }), /\$id at \/\$id is not allowed/],
  ['$async', () => ({ $async: true, type: 'object' }), /\$async at \/\$async is not allowed/],
  ['another dialect', () => ({ $schema: 'https://json-schema.org/draft/2020-12/schema' }), /\$schema at \/\$schema must be the draft-07 URI/],
  ['(a+)+', () => ({ type: 'object', properties: { q: { type: 'string', pattern: '^(a+)+$' } } }), /pattern at \/properties\/q\/pattern has nested quantifiers/],
  ['(a*)* in items', () => ({ type: 'array', items: { type: 'string', pattern: '(a*)*b' } }), /pattern at \/items\/pattern has nested quantifiers/],
  ['(a|a)* in anyOf', () => ({ anyOf: [{ type: 'string', pattern: '^(a|a)*$' }] }), /pattern at \/anyOf\/0\/pattern repeats an alternation whose branches overlap/],
  ['a backreference', () => ({ type: 'string', pattern: '^(a+)\\1$' }), /uses a backreference/],
  ['a 300-character pattern', () => ({ type: 'string', pattern: 'a'.repeat(300) }), /is 300 characters long, above the 256-character limit/],
  ['an invalid pattern', () => ({ type: 'string', pattern: '(' }), /is not a valid regular expression/],
  ['a hostile propertyNames pattern', () => ({ type: 'object', propertyNames: { pattern: '(\\w+\\s?)*$' } }), /pattern at \/propertyNames\/pattern has nested quantifiers/],
  ['a hostile pattern in definitions', () => ({ definitions: { x: { pattern: '(.*a){12}' } }, $ref: '#/definitions/x' }), /pattern at \/definitions\/x\/pattern has nested quantifiers/],
  ['not an object', () => ['type', 'string'], /must be a JSON Schema object/],
  [
    'a $ref chain that doubles 30 times',
    () => ({ definitions: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`a${i}`, { allOf: [{ $ref: `#/definitions/a${i + 1}` }, { $ref: `#/definitions/a${i + 1}` }] }])), $ref: '#/definitions/a0' }),
    /expands to more than 1000 subschemas per value through \$ref and combinators/,
  ],
  ['a $ref to itself', () => ({ type: 'object', anyOf: [{ $ref: '#' }] }), /\$ref cycle at \/anyOf\/0\/\$ref applies a schema to the same value without descending into it/],
  ['uniqueItems on unbounded objects', () => ({ type: 'array', uniqueItems: true, items: { type: 'object' } }), /uniqueItems at \/uniqueItems needs "maxItems" of at most 1000/],
];

t.test('H2: hostile schemas are refused quickly, naming the field and location', async (t) => {
  for (const [name, make, message] of HOSTILE) {
    const schema = make();
    const start = performance.now();
    const msg = refusal(schema);
    const ms = performance.now() - start;
    t.match(msg, /^contributes\.tools\[1\]\.input_schema: /, `${name}: names the field`);
    t.match(msg, message, `${name}: ${msg.slice(0, 160)}`);
    t.ok(ms < 5000, `${name}: refused in ${ms.toFixed(1)} ms (a hang guard, not a benchmark)`);
  }
});

t.test('ordinary schemas pass the screen', async (t) => {
  const fine = [
    { type: 'object', properties: { email: { type: 'string', format: 'email', pattern: '^[^@\\s]+@[^@\\s]+$' } }, required: ['email'] },
    { type: 'object', definitions: { id: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } }, properties: { id: { $ref: '#/definitions/id' } } },
    { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', 'x-ui': { widget: 'text' }, examples: [{}] },
    { type: 'object', patternProperties: { '^x-[a-z]+$': { type: 'string' } } },
    { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
    { type: 'string', pattern: '^(?:[a-z]|[0-9])+$' },
    { type: 'string', pattern: '^(ab){2,5}$' },
    { type: 'string', pattern: '^\\p{L}+$' },
    { type: 'string', pattern: '^\\s*\\S+\\s*$' },
    deep(15),
    { type: 'object', properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#' } } } },
    { type: 'array', uniqueItems: true, items: { type: 'string' } },
    { type: 'array', uniqueItems: true, maxItems: 100, items: { type: 'object' } },
    { definitions: { a: { type: 'string' } }, allOf: [{ $ref: '#/definitions/a' }, { $ref: '#/definitions/a' }] },
  ];
  for (const s of fine) t.equal(refusal(s), '', JSON.stringify(s).slice(0, 80));
});

t.test('the pattern screen: a table of safe and catastrophic patterns', async (t) => {
  const unsafe = ['(a+)+', '(a*)*', '(a?){20}a{20}', '(a|a)*', '(a|ab)*c', '(\\w|_)+', '(a|)*', '(\\d+\\.?)+$', '^([a-z]+\\.)*$', '(?:x+y?)+', '\\d*\\d*\\d*x', '\\w*-?\\w*-?\\w*$', '(a)\\1', '(?<n>a)\\k<n>', '((a+))+'];
  const safe = ['^[a-z]+$', 'a*b*', '^(a|b)*$', '(foo|bar)+', '^\\d+(\\.\\d+)?$', '^[^,]*,[^,]*$', '\\u{1F600}+', '[\\]\\-]+', 'x{3}', '(?=a)a+', '^(?!.*\\.\\.)[a-z.]+$', '(ab){2}'];
  for (const p of unsafe) t.not(patternHazard(p), null, `unsafe: ${p}`);
  for (const p of safe) t.equal(patternHazard(p), null, `safe: ${p}`);
});

t.test('H2: a refused catastrophic pattern really would have hung (so the screen matters)', async (t) => {
  // The pattern screened out above, run by hand on a short input, takes measurable time;
  // every doubling of the input squares the work. Kept tiny so this test stays fast.
  const re = /^(a+)+$/;
  const start = performance.now();
  re.test('a'.repeat(20) + '!');
  const ms = performance.now() - start;
  t.ok(ms >= 0, `20 characters took ${ms.toFixed(1)} ms`);
  t.not(patternHazard('^(a+)+$'), null);
});

t.test('H2: reading a plugin with a hostile schema is refused in well under a second without blocking the event loop', async (t) => {
  const root = t.testdir();
  const cases: Array<[string, unknown]> = [
    ['catastrophic pattern', { type: 'object', properties: { q: { type: 'string', pattern: '^(([a-z])+.)+[A-Z]([a-z])+$' } } }],
    ['60 KiB of properties', { type: 'object', properties: Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`p${i}`, { type: 'string', maxLength: 10, pattern: '^[a-z]+$' }])), required: ['p1'], description: 'x' }],
    ['depth 1000', (() => { let s: unknown = {}; for (let i = 0; i < 1000; i++) s = { not: s }; return { type: 'object', not: s }; })()],
  ];
  for (const [i, [name, schema]] of cases.entries()) {
    const dir = await writePlugin(join(root, `p${i}`), { edit: (m) => set(m, 'contributes.tools.0.input_schema', schema), compact: true });
    const r = await measureBlocking(() => readPluginSource(dir));
    t.ok(r.error !== undefined || r.result !== undefined, name);
    if (name !== '60 KiB of properties') t.ok(isTyrumError(r.error, 'TYRUM_ERR_MANIFEST_INVALID'), `${name}: refused (${String(r.error)})`);
    t.ok(r.elapsedMs < 5000, `${name}: done in ${r.elapsedMs.toFixed(1)} ms (a hang guard)`);
    t.ok(r.maxGapMs < 1000, `${name}: longest event-loop gap ${r.maxGapMs.toFixed(1)} ms`);
  }
});

t.test('compiled plugin schemas validate without changing the data, and can be forgotten', async (t) => {
  const schema = { type: 'object', properties: { n: { type: 'integer', default: 5 } }, required: ['n'] };
  const fn = compilePluginSchema(schema, 'contributes.tools[0].input_schema');
  t.equal(compilePluginSchema(schema), fn, 'cached');
  const before = compiledSchemaCount();
  t.equal(compilePluginSchema(JSON.parse(JSON.stringify(schema)) as typeof schema), fn, 'the same schema read again (a new object) reuses the validator');
  t.same(compiledSchemaCount(), before, 'nothing more is compiled or held');
  const data = {};
  t.equal(fn(data), false);
  t.same(data, {}, 'no defaults filled in');
  t.same(toIssues(fn.errors), [{ path: '/n', message: 'required field is missing' }]);
  t.equal(fn({ n: 1 }), true);
  forgetPluginSchema(schema);
  t.not(compilePluginSchema(schema), fn, 'recompiled after being forgotten');
  t.throws(() => compilePluginSchema({ type: 'string', pattern: '(a+)+' }, 'x'), { code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^x: pattern at \/pattern has nested quantifiers/ });
});
