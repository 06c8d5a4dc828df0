// A tool's input and output encodings (contributes.tools[].input / .output): what a manifest may
// declare, and every mistake refused with the field path.
import t from 'tap';
import { isTyrumError } from '../../core/errors/index.js';
import { readPluginSource } from '../../manifests/index.js';
import { set, writePlugin } from './helpers.js';

t.test('text and bytes encodings mapped to a declared string field are accepted; json is the default', async (t) => {
  const dir = await writePlugin(t.testdir(), {
    edit: (m) => {
      set(m, 'contributes.tools.0.input', { encoding: 'text', field: 'text' });
      set(m, 'contributes.tools.0.output', { encoding: 'bytes', field: 'text' });
      set(m, 'contributes.tools.1.input', { encoding: 'json' });
    },
  });
  const src = await readPluginSource(dir);
  t.same(src.manifest.contributes.tools[0]?.input, { encoding: 'text', field: 'text' });
  t.same(src.manifest.contributes.tools[0]?.output, { encoding: 'bytes', field: 'text' });
  t.same(src.manifest.contributes.tools[1]?.input, { encoding: 'json' });
  t.equal(src.manifest.contributes.tools[1]?.output, undefined);
});

const CASES: Array<{ name: string; edit: (m: Record<string, unknown>) => void; message: RegExp; field?: string }> = [
  {
    name: 'an input field that is not a property of the input schema',
    edit: (m) => set(m, 'contributes.tools.0.input', { encoding: 'text', field: 'body' }),
    message: /^contributes\.tools\[0\]\.input\.field: "body" is not a declared string property of contributes\.tools\[0\]\.input_schema/,
    field: 'contributes.tools[0].input.field',
  },
  {
    name: 'an input field whose property is not a string',
    edit: (m) => {
      set(m, 'contributes.tools.0.input_schema', { type: 'object', properties: { text: { type: 'integer' } }, required: ['text'] });
      set(m, 'contributes.tools.0.input', { encoding: 'bytes', field: 'text' });
    },
    message: /^contributes\.tools\[0\]\.input\.field: "text" is not a declared string property/,
    field: 'contributes.tools[0].input.field',
  },
  {
    name: 'an input field the schema does not require',
    edit: (m) => set(m, 'contributes.tools.1.input', { encoding: 'text', field: 'text' }),
    message: /^contributes\.tools\[1\]\.input\.field: "text" must be listed in contributes\.tools\[1\]\.input_schema's "required"/,
    field: 'contributes.tools[1].input.field',
  },
  {
    name: 'an output field the output schema does not declare',
    edit: (m) => set(m, 'contributes.tools.1.output', { encoding: 'text', field: 'result' }),
    message: /^contributes\.tools\[1\]\.output\.field: "result" is not a declared string property of contributes\.tools\[1\]\.output_schema/,
    field: 'contributes.tools[1].output.field',
  },
  {
    name: 'text without a field',
    edit: (m) => set(m, 'contributes.tools.0.input', { encoding: 'text' }),
    message: /^contributes\.tools\[0\]\.input\.field: required with encoding "text"/,
    field: 'contributes.tools[0].input.field',
  },
  {
    name: 'json with a field',
    edit: (m) => set(m, 'contributes.tools.0.output', { encoding: 'json', field: 'text' }),
    message: /^contributes\.tools\[0\]\.output\.field: only allowed with encoding "text" or "bytes"/,
    field: 'contributes.tools[0].output.field',
  },
  { name: 'an unknown encoding', edit: (m) => set(m, 'contributes.tools.0.input', { encoding: 'xml', field: 'text' }), message: /\/contributes\/tools\/0\/input\/encoding/ },
];

t.test('encoding mistakes are manifest errors naming the field', async (t) => {
  const root = t.testdir();
  for (const [i, c] of CASES.entries()) {
    const err = await readPluginSource(await writePlugin(`${root}/p${i}`, { edit: c.edit })).catch((e: unknown) => e);
    t.ok(isTyrumError(err, 'TYRUM_ERR_MANIFEST_INVALID'), `${c.name}: code`);
    t.match((err as Error).message, c.message, `${c.name}: ${(err as Error).message.slice(0, 200)}`);
    if (c.field) t.equal((err as { details: { field: string } }).details.field, c.field, `${c.name}: details.field`);
  }
});
