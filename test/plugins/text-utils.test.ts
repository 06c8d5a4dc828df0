// text-utils, built from source (plugins/text-utils) and run in a real SandboxPool: Unicode-correct
// outputs that satisfy the manifest's output schemas, coded errors for bad input, and the largest
// inputs within the default memory cap.
import t from 'tap';
import fc from 'fast-check';
import { validate } from '../../core/protocol/validate.js';
import { impliedRisks } from '../../manifests/capabilities.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxReason, type CallResult } from '../../sandbox/index.js';
import { dec, enc, label, loadBuilt, readBuilt, readSourceManifest, sha256, toolSchemas } from './helpers.js';

const plugin = readBuilt('text-utils');
const schemas = toolSchemas(plugin.manifest);
const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const ready = loadBuilt(pool, 'text-utils', plugin);

type Json = Record<string, unknown>;

/** Call a tool with schema-valid args; its output must satisfy the tool's output schema. */
async function call(tool: 'word_count' | 'transform', args: Json): Promise<Json> {
  const s = schemas.get(tool);
  if (s === undefined) throw new Error(`no tool ${tool}`);
  if (!s.input(args)) throw new Error(`test bug: args do not satisfy ${tool}'s input schema: ${JSON.stringify(s.input.errors)}`);
  await ready;
  const r: CallResult = await pool.call('text-utils', tool, enc(args));
  const out = JSON.parse(dec(r.output)) as Json;
  if (!s.output(out)) throw new Error(`${tool} output violates its schema: ${JSON.stringify(s.output.errors)} in ${dec(r.output).slice(0, 200)}`);
  return out;
}

async function transform(text: string, op: string): Promise<string> {
  return (await call('transform', { text, op })).text as string;
}

/** Call with raw input bytes and return the coded error. */
async function refused(tool: string, input: string | Json): Promise<Error> {
  await ready;
  const e = await pool.call('text-utils', tool, enc(input)).then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e as Error,
  );
  return e;
}

t.test('the build directory is an installable plugin: manifest contract, digest, declared risks', async (t) => {
  t.same(validate(PluginManifest, plugin.manifest), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.equal(plugin.manifest.wasm.path, 'plugin.wasm');
  t.equal(plugin.manifest.wasm.sha256, sha256(plugin.wasm), 'the manifest digest is the digest of build/plugin.wasm');
  const source = readSourceManifest('text-utils');
  t.same(validate(PluginManifest, source), [], 'the source manifest satisfies the contract too');
  t.same(source.wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) }, 'the source keeps the build path and a placeholder digest');
  t.same({ ...plugin.manifest, wasm: source.wasm }, source, 'the build manifest is the source manifest with only wasm changed');
  t.match(plugin.manifest, { id: 'text-utils', version: '1.0.0', engines: { tyrum: '^1.0.0' } });
  t.equal(plugin.manifest.requests, undefined, 'asks for nothing');
  t.equal(plugin.manifest.risk, undefined, 'declares no risk');
  t.same(impliedRisks(plugin.manifest), [], 'and needs none');
  t.ok(plugin.manifest.contributes.tools.every((tool) => tool.effect === 'read_only'));
});

t.test('the module passes the sandbox load checks: only the Extism kernel and env.abort are imported', async (t) => {
  const info = await ready;
  t.equal(info.sha256, plugin.manifest.wasm.sha256);
  t.ok(info.imports.length > 0);
  for (const imp of info.imports) t.ok(imp.startsWith('extism:host/env.') || imp === 'env.abort', `allowed import ${imp}`);
  t.notOk(info.imports.some((i) => i.startsWith('extism:host/env.http') || i.startsWith('tyrum:host/v1.')), 'no network, no storage');
  t.match(info.memory, { declaredMaxPages: null, rewritten: true, maxPages: 256 }, 'its memory is capped by the sandbox (16 MiB default)');
});

t.test('word_count: words, Unicode code points and lines', async (t) => {
  const cases: Array<[string, { words: number; chars: number; lines: number }]> = [
    ['', { words: 0, chars: 0, lines: 0 }],
    ['hello', { words: 1, chars: 5, lines: 1 }],
    ['  hello   world  ', { words: 2, chars: 17, lines: 1 }],
    ['a\n', { words: 1, chars: 2, lines: 1 }],
    ['a\nb', { words: 2, chars: 3, lines: 2 }],
    ['a\r\nb\r\n', { words: 2, chars: 6, lines: 2 }],
    ['a\rb', { words: 2, chars: 3, lines: 2 }],
    ['\n\n', { words: 0, chars: 2, lines: 2 }],
    ['one\u2028two\u2029three\u0085four', { words: 4, chars: 18, lines: 4 }],
    ['café déjà vu', { words: 3, chars: 12, lines: 1 }],
    ['cafe\u0301', { words: 1, chars: 5, lines: 1 }],
    ['😀 👍🏽 👨‍👩‍👧', { words: 3, chars: 10, lines: 1 }],
    ['hi😀there', { words: 1, chars: 8, lines: 1 }],
    ['你好世界', { words: 4, chars: 4, lines: 1 }],
    ['你好，世界。', { words: 4, chars: 6, lines: 1 }],
    ['日本語のテキスト', { words: 8, chars: 8, lines: 1 }],
    ['Tyrum 网关 gateway', { words: 4, chars: 16, lines: 1 }],
    ['한국어 문장입니다', { words: 2, chars: 9, lines: 1 }],
    ['non\u00a0breaking\u3000space\ttab', { words: 4, chars: 22, lines: 1 }],
    ['𠀀𠀁 x', { words: 3, chars: 4, lines: 1 }],
  ];
  for (const [text, expected] of cases) {
    t.same(await call('word_count', { text }), expected, label(text));
    t.equal(expected.chars, [...text].length, 'chars are code points, as JavaScript counts them');
  }
});

t.test('word_count agrees with a reference on arbitrary Unicode without CJK', async () => {
  const ws = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.array(fc.constantFrom(' ', '\n', '\t', '\u00a0'), { maxLength: 3 }), async (s, sep) => {
      const plain = s.replace(/[\u3000-\u9fff\uf900-\ufaff\uff01-\uff9f\u{20000}-\u{3134f}]/gu, 'x');
      const text = plain + sep.join('') + plain;
      const out = await call('word_count', { text });
      const words = text.split(ws).filter((w) => w.length > 0).length;
      return out.words === words && out.chars === [...text].length;
    }),
    { numRuns: 150 },
  );
});

t.test('transform upper and lower: full Unicode case mapping, same as JavaScript', async (t) => {
  const corpus = [
    'hello world',
    'Grüße aus Köln, straße',
    'ÀÉÎÕÜ àéîõü Çç Ññ',
    'ŁÓDŹ łódź Œuvre œuvre',
    'İstanbul ıi',
    'ΣΊΣΥΦΟΣ Οδός ΟΔΟΣ, Σ ΑΣ. ΌΣΟΣ',
    'ǅungla ǆ Ǆ',
    'Здравствуй, МИР! ёЁ',
    'Հայաստան ﬀ ﬁ և',
    'ŉ ΐ ǰ ẞ',
    '😀 emoji 👍🏽 stay 🇫🇷',
    '你好世界 日本語 한국어',
    '𐐀𐐨 Deseret',
    'mixed ASCII and é😀你',
  ];
  for (const s of corpus) {
    t.equal(await transform(s, 'upper'), s.toUpperCase(), `upper ${label(s)}`);
    t.equal(await transform(s, 'lower'), s.toLowerCase(), `lower ${label(s)}`);
  }
  t.equal(await transform('straße', 'upper'), 'STRASSE', 'ß becomes SS');
  t.equal(await transform('ΟΔΟΣ ΚΑΙ ΟΔΟΣ', 'lower'), 'οδος και οδος', 'final sigma at each word end, whatever is around');
});

t.test('transform reverse keeps user-perceived characters whole', async (t) => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['abc', 'cba'],
    ['héllo', 'olléh'],
    ['cafe\u0301!', '!e\u0301fac'],
    ['a😀b', 'b😀a'],
    ['x👍🏽y', 'y👍🏽x'],
    ['1👨‍👩‍👧2', '2👨‍👩‍👧1'],
    ['🇫🇷🇩🇪🇯🇵', '🇯🇵🇩🇪🇫🇷'],
    ['🇫🇷🇩', '🇩🇫🇷'],
    ['1️⃣2', '21️⃣'],
    ['a\r\nb', 'b\r\na'],
    ['你好世界', '界世好你'],
    ['한국어', '어국한'],
    ['नमस्ते', reverseByExtend('नमस्ते')],
    ['a\ud800b', 'b\ud800a'],
    ['"quoted" \\ back\tslash', 'hsals\tkcab \\ "detouq"'],
  ];
  for (const [s, expected] of cases) t.equal(await transform(s, 'reverse'), expected, `reverse ${label(s)}`);
});

/** Reference for Devanagari: marks (U+0900-0903, 093A-094F) stay after their base. */
function reverseByExtend(s: string): string {
  const clusters: string[] = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    const mark = (cp >= 0x900 && cp <= 0x903) || (cp >= 0x93a && cp <= 0x94f && cp !== 0x93d);
    if (mark && clusters.length > 0) clusters[clusters.length - 1] += ch;
    else clusters.push(ch);
  }
  return clusters.reverse().join('');
}

t.test('transform reverse is a plain reversal on text without marks or emoji, and keeps every code point', async () => {
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: fc.constantFrom(...'abcXYZ 019 ,.!éñßΩЖ你好\n\t"\\'.split('')), maxLength: 60 }), async (s) => {
      return (await transform(s, 'reverse')) === [...s].reverse().join('');
    }),
    { numRuns: 150 },
  );
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 30 }), async (s) => {
      const r = await transform(s, 'reverse');
      return r.length === s.length && [...r].sort().join('') === [...s].sort().join('');
    }),
    { numRuns: 150 },
  );
});

t.test('transform slug: lower-case ASCII words joined by "-"', async (t) => {
  const cases: Array<[string, string]> = [
    ['Hello, World!', 'hello-world'],
    ['  --Crème   Brûlée--  ', 'creme-brulee'],
    ["Don't Stop Me Now", 'dont-stop-me-now'],
    ['Straße Æsir Œuvre Þorn ĳssel', 'strasse-aesir-oeuvre-thorn-ijssel'],
    ['Łódź, Kraków & Gdańsk', 'lodz-krakow-gdansk'],
    ['Cafe\u0301 au lait', 'cafe-au-lait'],
    ['İstanbul', 'istanbul'],
    ['2 × 3 ÷ 4 = 1.5', '2-3-4-1-5'],
    ['你好 world 😀', 'world'],
    ['你好', ''],
    ['😀😀', ''],
    ['', ''],
    ['ALREADY-a-slug', 'already-a-slug'],
  ];
  for (const [s, expected] of cases) t.equal(await transform(s, 'slug'), expected, `slug ${label(s)}`);

  // Every Latin-1 and Latin Extended-A letter folds to its base letter, as Unicode decomposition gives it.
  const special: Record<string, string> = { æ: 'ae', ð: 'd', ø: 'o', þ: 'th', ß: 'ss', đ: 'd', ħ: 'h', ı: 'i', ĳ: 'ij', ĸ: 'k', ŀ: 'l', ł: 'l', ŉ: 'n', ŋ: 'n', œ: 'oe', ŧ: 't', ſ: 's' };
  const letters: string[] = [];
  for (let cp = 0xc0; cp <= 0x17f; cp++) if (cp !== 0xd7 && cp !== 0xf7) letters.push(String.fromCodePoint(cp));
  const got = (await transform(letters.join(' '), 'slug')).split('-');
  t.equal(got.length, letters.length);
  letters.forEach((ch, i) => {
    const lower = ch.toLowerCase();
    const expected = [...lower].map((c) => special[c] ?? c.normalize('NFD').replace(/[\u0300-\u036f]/g, '')).join('');
    if (got[i] !== expected) t.fail(`slug of ${ch} (U+${ch.codePointAt(0)?.toString(16)}) is ${got[i]}, expected ${expected}`);
  });
  t.pass('Latin-1 and Latin Extended-A fold to ASCII');
  t.ok(schemas.get('transform')?.output({ text: '' }), 'an empty slug is a valid output');
});

t.test('escaped input decodes as JSON.parse decodes it (every UTF-16 unit as a \\u escape, lone surrogates too)', async (t) => {
  await ready;
  // Checked through the code-point count, not through case mapping: AssemblyScript's case tables
  // (Unicode 16, e.g. Garay U+10D50) are newer than Node 20's ICU (15.1), so comparing
  // toLowerCase() results would test two Unicode versions rather than the escape decoder.
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 40 }), fc.boolean(), async (s, upperHex) => {
      let body = '';
      for (let i = 0; i < s.length; i++) {
        const hex = s.charCodeAt(i).toString(16).padStart(4, '0');
        body += `\\u${upperHex ? hex.toUpperCase() : hex}`;
      }
      const r = await pool.call('text-utils', 'word_count', enc(`{"text":"${body}"}`));
      return (JSON.parse(dec(r.output)) as { chars: number }).chars === [...s].length;
    }),
    { numRuns: 300 },
  );
  // The same escaped astral character round-trips exactly through an operation that keeps it.
  const r = await pool.call('text-utils', 'transform', enc('{"op":"upper","text":"\\ud803\\udd50\\u00e9"}'));
  t.equal((JSON.parse(dec(r.output)) as { text: string }).text.slice(-1), '\u00c9', 'escapes around an astral pair decode correctly');
});

t.test('outputs are UTF-8 byte for byte (as-pdk outputString would cut non-ASCII short)', async (t) => {
  await ready;
  const text = 'é😀你\u0000"\\\n';
  const r = await pool.call('text-utils', 'transform', enc({ text, op: 'upper' }));
  const expected = JSON.stringify({ text: text.toUpperCase() });
  t.equal(dec(r.output), expected, 'exact bytes: escapes and raw UTF-8, nothing cut');
  t.equal(r.output.byteLength, Buffer.byteLength(expected));
  t.equal(r.usage.output_bytes, r.output.byteLength);
});

t.test('bad input is a coded plugin error with the plugin\'s message; the instance keeps serving', async (t) => {
  const cases: Array<[string, string | Json, RegExp, boolean]> = [
    ['word_count', 'not json', /invalid input: not valid JSON \(invalid literal at byte 0\)/, false],
    ['word_count', '{"text": "a",}', /not valid JSON \(expected a string key at byte 13\)/, false],
    ['word_count', '{"text": "\\x"}', /not valid JSON \(invalid escape/, false],
    ['word_count', '{"text": "a"} x', /unexpected data after the JSON value/, false],
    ['word_count', '"just a string"', /expected a JSON object, got a string/, true],
    ['word_count', [1, 2] as unknown as Json, /expected a JSON object, got an array/, true],
    ['word_count', {}, /"text" is required/, true],
    ['word_count', { text: 42 }, /"text" must be a string, got a number/, true],
    ['word_count', { text: null }, /"text" must be a string, got null/, true],
    ['word_count', { text: 'x', extra: true }, /unknown key "extra" \(allowed: text\)/, true],
    ['transform', { text: 'x' }, /"op" is required/, true],
    ['transform', { text: 'x', op: 'shout' }, /"op" must be one of "upper", "lower", "reverse", "slug"/, true],
    ['transform', { text: 'x', op: 'upper', mode: 1 }, /unknown key "mode" \(allowed: text, op\)/, true],
    ['transform', '{"text": "a", "text": "b", "op": "upper"}', /duplicate key "text"/, false],
  ];
  for (const [tool, input, message, schemaParsable] of cases) {
    const e = await refused(tool, input);
    t.equal(sandboxReason(e), 'plugin_error', `${tool} ${label(typeof input === 'string' ? input : JSON.stringify(input))}`);
    t.match(e.message, /^plugin reported an error: invalid input: /);
    t.match(e.message, message);
    if (schemaParsable) t.notOk(schemas.get(tool)?.input(input), 'the input schema refuses it too');
  }
  t.equal(await transform('still here', 'upper'), 'STILL HERE', 'the same instance still answers');
});

t.test('the length limit: 1,048,576 code points pass (within the default 16 MiB memory cap), one more is refused', async (t) => {
  const max = 1048576;
  const ascii = 'a'.repeat(max);
  const up = await transform(ascii, 'upper');
  t.ok(up === ascii.toUpperCase(), '1 MiB of ASCII upper-cased');
  t.same(await call('word_count', { text: ascii }), { words: 1, chars: max, lines: 1 });
  // The largest CJK text the default 4 MiB input limit admits: 3 bytes each.
  const cjk = '你好世界'.repeat(262_000);
  t.equal(await transform(cjk, 'reverse'), [...cjk].reverse().join(''), 'a 3 MiB CJK text reversed');
  const astral = '😀é'.repeat(349_000); // 2 UTF-16 units + 1, 6 UTF-8 bytes per pair
  t.equal(await transform(astral, 'lower'), astral.toLowerCase(), 'astral and accented, near the input limit');
  const e = await refused('word_count', { text: 'a'.repeat(max + 1) });
  t.equal(sandboxReason(e), 'plugin_error');
  t.match(e.message, 'invalid input: "text" has 1048577 characters, more than the 1048576 allowed');
  t.notOk(schemas.get('word_count')?.input({ text: 'a'.repeat(max + 1) }), 'the schema says the same (maxLength counts code points)');
  t.ok(schemas.get('word_count')?.input({ text: '😀'.repeat(max) }), 'and counts code points, not UTF-16 units');
});

t.test('memory does not creep over many calls: each call starts from a collected heap', async (t) => {
  await loadBuilt(pool, 'text-utils-soak', plugin); // a fresh instance: linear memory never shrinks
  const text = 'Grüße 😀 你好 '.repeat(4000);
  const pages: number[] = [];
  for (let i = 0; i < 400; i++) {
    const r = await pool.call('text-utils-soak', 'transform', enc({ text, op: ['upper', 'lower', 'reverse', 'slug'][i % 4] }));
    pages.push(r.usage.mem_pages_peak ?? -1);
  }
  const after = pages.slice(20);
  t.equal(Math.max(...after), Math.min(...after), `memory stable at ${Math.max(...after)} pages (64 KiB) after warm-up`);
  t.ok(Math.max(...pages) <= 16, 'a 100 KB text needs at most 1 MiB');
});
