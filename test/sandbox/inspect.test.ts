import t from 'tap';
import { isTyrumError } from '../../core/errors/index.js';
import { inspectModule, sandboxReason, type InspectPolicy } from '../../sandbox/index.js';
import { Wasm } from '../../sandbox/wasm-api.js';
import { encodeU32, readExports, readMemories, readSections, SECTION_EXPORT, SECTION_MEMORY } from '../../sandbox/wasm-binary.js';
import { sha256, wat } from './helpers.js';

async function policyFor(name: string, over: Partial<InspectPolicy> = {}): Promise<[Uint8Array, InspectPolicy]> {
  const wasm = await wat(name);
  return [wasm, { expectedSha256: sha256(wasm), exports: [], memoryPages: 256, maxModuleBytes: 1 << 20, ...over }];
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

function exportsOf(bytes: Uint8Array) {
  const sec = readSections(bytes).find((s) => s.id === SECTION_EXPORT);
  return sec ? readExports(bytes, sec) : [];
}

function memoryOf(bytes: Uint8Array) {
  const sec = readSections(bytes).find((s) => s.id === SECTION_MEMORY);
  return sec ? readMemories(bytes, sec) : [];
}

t.test('a module whose digest differs from the expected one is refused, naming both digests (D8)', async (t) => {
  const [wasm, policy] = await policyFor('pdk');
  const expected = 'ab'.repeat(32);
  const e = caught(() => inspectModule(wasm, { ...policy, expectedSha256: expected }));
  t.equal(sandboxReason(e), 'digest_mismatch');
  t.match((e as Error).message, expected);
  t.match((e as Error).message, sha256(wasm));
  t.same((e as { details: unknown }).details, { expected, actual: sha256(wasm), reason: 'digest_mismatch' });
});

t.test('a tampered module (one byte changed) fails the digest check before anything else', async (t) => {
  const [wasm, policy] = await policyFor('pdk');
  const tampered = wasm.slice();
  const last = tampered.length - 1;
  tampered[last] = (tampered[last] ?? 0) ^ 0xff;
  t.equal(sandboxReason(caught(() => inspectModule(tampered, policy))), 'digest_mismatch');
});

t.test('an expected digest that is not 64 hex digits is an invalid argument', async (t) => {
  const [wasm, policy] = await policyFor('pdk');
  t.equal(sandboxReason(caught(() => inspectModule(wasm, { ...policy, expectedSha256: 'sha256:abc' }))), 'invalid_argument');
});

t.test('bytes that are not valid WebAssembly are rejected', async (t) => {
  const junk = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0x05, 0x10]);
  const e = caught(() => inspectModule(junk, { expectedSha256: sha256(junk), exports: [], memoryPages: 16, maxModuleBytes: 100 }));
  t.equal(sandboxReason(e), 'module_rejected');
  t.match((e as { details: unknown }).details, { check: 'validate' });
});

t.test('a module above the size limit is rejected before hashing', async (t) => {
  const [wasm, policy] = await policyFor('pdk', { maxModuleBytes: 100 });
  const e = caught(() => inspectModule(wasm, policy));
  t.match((e as { details: unknown }).details, { check: 'size' });
});

t.test('WASI imports outside the preview1 shim are rejected at load, naming each import (D5)', async (t) => {
  const [wasm, policy] = await policyFor('wasi');
  const e = caught(() => inspectModule(wasm, policy));
  t.equal(sandboxReason(e), 'module_rejected');
  t.match((e as Error).message, 'wasi_unstable.fd_write');
  t.match((e as Error).message, 'wasi_unstable.path_open');
  t.match((e as Error).message, /WASI is not available/);
  t.same((e as { details: { imports: unknown } }).details.imports, ['wasi_unstable.fd_write', 'wasi_unstable.path_open']);
});

t.test('unknown host functions, imported memories and tables are rejected with the reason for each', async (t) => {
  const [wasm, policy] = await policyFor('imports-other');
  const e = caught(() => inspectModule(wasm, policy)) as Error & { details: { imports: string[] } };
  t.ok(isTyrumError(e));
  t.same(e.details.imports, ['evil.exfiltrate', 'env.memory', 'env.table', 'extism:host/env.spawn_process']);
  t.match(e.message, 'evil.exfiltrate (function): neither an Extism kernel function nor a Tyrum host API v1 function');
  t.match(e.message, 'env.memory (memory): imported memories are not supported');
  t.match(e.message, 'env.table (table): imported tables are not supported');
  t.match(e.message, 'extism:host/env.spawn_process');
});

t.test('a declared export the module lacks is named in the rejection', async (t) => {
  const [wasm, policy] = await policyFor('pdk', { exports: ['greet', 'summarize', 'translate'] });
  const e = caught(() => inspectModule(wasm, policy)) as Error & { details: unknown };
  t.match(e.message, 'summarize, translate');
  t.match(e.details, { check: 'exports', missing: ['summarize', 'translate'] });
});

t.test('a module with no memory maximum is capped, not refused (D2)', async (t) => {
  const [wasm, policy] = await policyFor('pdk', { memoryPages: 40, exports: ['greet', 'count', 'echo'] });
  t.same(memoryOf(wasm), [{ flags: 0, initial: 1, maximum: null }], 'the fixture declares no maximum');
  const r = inspectModule(wasm, policy);
  t.same(r.memory, { initialPages: 1, declaredMaxPages: null, maxPages: 40, rewritten: true });
  t.same(memoryOf(r.bytes), [{ flags: 1, initial: 1, maximum: 40 }]);
  t.equal(r.sha256, sha256(wasm), 'the digest is of the bytes as shipped');
  t.ok(Wasm.validate(r.bytes));
  t.same(exportsOf(r.bytes), exportsOf(wasm), 'the rest of the module is unchanged');
  t.equal(r.bytes.length, wasm.length + 1, 'only the memory limits grew (one flag-set maximum byte)');
});

t.test('a maximum above the cap is lowered to the cap; one below it is kept', async (t) => {
  const [wasm, policy] = await policyFor('mem-max-over', { memoryPages: 300 });
  const r = inspectModule(wasm, policy);
  t.same(r.memory, { initialPages: 2, declaredMaxPages: 1000, maxPages: 300, rewritten: true });
  t.same(memoryOf(r.bytes), [{ flags: 1, initial: 2, maximum: 300 }], 'a two-byte LEB128 maximum re-encoded');
  const kept = inspectModule(wasm, { ...policy, memoryPages: 2000 });
  t.equal(kept.bytes, wasm, 'no rewrite when the maximum is within the cap');
  t.same(kept.memory, { initialPages: 2, declaredMaxPages: 1000, maxPages: 1000, rewritten: false });
});

t.test('an initial memory above the cap is rejected (D2)', async (t) => {
  const [wasm, policy] = await policyFor('mem-initial-over');
  const e = caught(() => inspectModule(wasm, policy)) as Error & { details: unknown };
  t.equal(sandboxReason(e), 'module_rejected');
  t.match(e.message, '300 pages, above the cap of 256 pages');
  t.match(e.details, { check: 'memory', initial_pages: 300, cap_pages: 256 });
});

t.test('LEB128 encoding round-trips through the section reader at byte boundaries', async (t) => {
  for (const n of [0, 1, 127, 128, 16383, 16384, 65536, 0xffffffff]) {
    const body = [1, 0x01, ...encodeU32(1), ...encodeU32(n)];
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, SECTION_MEMORY, ...encodeU32(body.length), ...body]);
    t.same(memoryOf(bytes), [{ flags: 1, initial: 1, maximum: n }], `maximum ${n}`);
  }
  t.throws(() => encodeU32(-1));
});
