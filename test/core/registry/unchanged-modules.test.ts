/**
 * Standard Extism modules work without changes: raw text/bytes exports through a tool's declared
 * input/output encoding, exports that succeed without output, and failures whose explanation is in
 * the plugin's own log (a bounded, redacted excerpt reaches the caller).
 */
import t from 'tap';
import { gatewayWithAdmin } from '../../helpers/gateway.js';
import { installEnabled, pluginDir } from './helpers.js';

type RunResult = { state: string; output: unknown; error: { code: string; wire: string; message: string; details?: Record<string, unknown> } | null };

t.test('unchanged Extism modules', async (t) => {
  const { gw, admin } = await gatewayWithAdmin(t);
  const invoke = async (tool_id: string, args: Record<string, unknown>): Promise<{ ok: boolean; result?: RunResult; error?: { code: string; message: string } }> =>
    (await admin.conn.request('tool.invoke', { tool_id, args })) as never;
  /** A plugin written under the subtest's directory, installed, granted and enabled. */
  const install = async (t: { testdir(): string }, spec: Parameters<typeof pluginDir>[1]) => installEnabled(gw.plugins, await pluginDir(t.testdir(), spec));

  const text = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'], additionalProperties: false };
  const data = { type: 'object', properties: { data: { type: 'string' } }, required: ['data'], additionalProperties: false };
  // The encodings that map those string fields to the export's raw bytes.
  const asText = { encoding: 'text', field: 'text' } as const;
  const asBytes = { encoding: 'bytes', field: 'data' } as const;
  const report = { type: 'object', properties: { count: { type: 'integer' }, total: { type: 'integer' }, vowels: { type: 'string' } }, required: ['count', 'total', 'vowels'], additionalProperties: false };

  t.test('count_vowels reads raw text: a tool with input encoding text is invoked as a normal tool', async (t) => {
    await install(t, {
      id: 'vowels',
      wat: 'count-vowels',
      tools: [
        { id: 'count_vowels', input: text, output: report, io: { input: asText } },
        { id: 'as_json', export: 'count_vowels', input: text, output: report },
      ],
    });
    const r = await invoke('vowels.count_vowels', { text: 'Hello, World! ÄÖÜ aeiou' });
    t.equal(r.result?.state, 'succeeded', JSON.stringify(r));
    t.same(r.result?.output, { count: 8, total: 8, vowels: 'aeiouAEIOU' }, 'only the text reached the export, as raw UTF-8');
    // Without the declared encoding the export reads the JSON text of the arguments: the
    // vowels of "text" and of the punctuation are counted too.
    const json = await invoke('vowels.as_json', { text: 'Hello, World! ÄÖÜ aeiou' });
    t.same(json.result?.output, { count: 9, total: 9, vowels: 'aeiouAEIOU' }, 'the JSON default is unchanged');
    const bad = await invoke('vowels.count_vowels', { text: 7 });
    t.equal(bad.error?.code, 'invalid_request', 'the arguments are still checked against the input schema');
  });

  t.test('bytes in and out are base64 in the JSON field; text out is wrapped into the field', async (t) => {
    await install(t, {
      id: 'raw',
      wat: 'raw-io',
      tools: [
        { id: 'bytes', export: 'echo', input: data, output: data, io: { input: asBytes, output: asBytes } },
        { id: 'text', export: 'echo', input: text, output: text, io: { input: asText, output: asText } },
        { id: 'latin', export: 'echo', input: data, output: text, io: { input: asBytes, output: asText } },
      ],
    });
    const bin = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80]).toString('base64');
    t.same((await invoke('raw.bytes', { data: bin })).result?.output, { data: bin }, 'arbitrary bytes round-trip');
    t.same((await invoke('raw.text', { text: 'héllo 😀' })).result?.output, { text: 'héllo 😀' });
    const notB64 = await invoke('raw.bytes', { data: 'not base64!' });
    t.equal(notB64.error?.code, 'invalid_request', 'a bytes argument that is not base64 is refused before a run exists');
    t.match(notB64.error?.message, /base64/);
    const notUtf8 = await invoke('raw.latin', { data: Buffer.from([0xc3, 0x28]).toString('base64') });
    t.equal(notUtf8.result?.state, 'failed');
    t.match(notUtf8.result?.error?.message, /not valid UTF-8/);
  });

  t.test('an export that succeeds with no output returns null, not a "not JSON" failure', async (t) => {
    await install(t, {
      id: 'quiet',
      wat: 'raw-io',
      tools: [
        { id: 'nothing', input: { type: 'object' }, output: {} },
        { id: 'nothing_null', export: 'nothing', input: { type: 'object' }, output: { type: 'null' } },
        { id: 'nothing_object', export: 'nothing', input: { type: 'object' }, output: { type: 'object' } },
        { id: 'nothing_text', export: 'nothing', input: text, output: text, io: { output: asText } },
      ],
    });
    const r = await invoke('quiet.nothing', {});
    t.equal(r.result?.state, 'succeeded', JSON.stringify(r.result?.error));
    t.equal(r.result?.output, null);
    t.equal((await invoke('quiet.nothing_null', {})).result?.output, null);
    t.same((await invoke('quiet.nothing_text', { text: 'x' })).result?.output, { text: '' });
    const obj = await invoke('quiet.nothing_object', {});
    t.equal(obj.result?.state, 'failed', 'a schema that does not accept null still fails the call');
    t.match(obj.result?.error?.message, /no output.*output schema/);
    t.notMatch(obj.result?.error?.message, /not JSON/);
  });

  t.test("a failure explained by the plugin's own log carries a bounded, redacted excerpt of it", async (t) => {
    const CANARY = `CANARY-${Math.random().toString(36).slice(2)}-${Date.now()}`;
    gw.secrets.set('LOG_TOKEN', Buffer.from(CANARY), ['127.0.0.1']);
    await install(t, {
      id: 'loud',
      wat: 'raw-io',
      tools: [
        { id: 'log_trap', input: text, io: { input: asText } },
        { id: 'log_error', input: text, io: { input: asText } },
      ],
    });
    for (const tool of ['loud.log_trap', 'loud.log_error']) {
      const r = await invoke(tool, { text: `using token ${CANARY} ${'x'.repeat(4000)}` });
      t.equal(r.result?.state, 'failed', tool);
      const details = r.result?.error?.details ?? {};
      const excerpt = details['log_excerpt'];
      t.type(excerpt, 'string', `${tool}: the error carries the log excerpt`);
      t.match(excerpt, /open \/mnt\/test\.txt: errno 76/, `${tool}: the explaining line is there`);
      t.ok(Buffer.byteLength(String(excerpt)) <= 1024, `${tool}: bounded (${Buffer.byteLength(String(excerpt))} bytes)`);
      t.notMatch(JSON.stringify(r), CANARY, `${tool}: the secret never reaches the caller`);
      t.notOk('logs' in details, 'the raw log lines stay with the operator');
    }
    const short = await invoke('loud.log_error', { text: `token ${CANARY}` });
    t.match(short.result?.error?.details?.['log_excerpt'], /\[REDACTED:LOG_TOKEN\]/, 'a secret in the log is redacted, not dropped');
  });
});
