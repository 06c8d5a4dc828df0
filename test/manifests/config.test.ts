// Plugin configuration against config_schema: defaults, unknown keys, and secret fields that
// accept only the name of an existing, granted handle (E5 for config).
import t, { type Test } from 'tap';
import { isTyrumError } from '../../core/errors/index.js';
import { compiledSchemaCount, validatePluginConfig, type SecretLookup } from '../../manifests/index.js';
import type { PluginManifest } from '../../schemas/index.js';

type ConfigManifest = Pick<PluginManifest, 'id' | 'config_schema' | 'requests'>;

const manifest: ConfigManifest = {
  id: 'weather',
  requests: { secrets: [{ name: 'WEATHER_KEY', destinations: ['api.weather.example'] }, { name: 'OTHER_KEY', destinations: ['api.weather.example'] }] },
  config_schema: {
    type: 'object',
    properties: {
      units: { type: 'string', enum: ['metric', 'imperial'], default: 'metric' },
      retries: { type: 'integer', minimum: 0, maximum: 5, default: 2 },
      api_key: { type: 'string', 'x-tyrum-secret': true },
      nested: { type: 'object', properties: { token: { type: 'string', 'x-tyrum-secret': true }, label: { type: 'string', default: 'x' } }, default: {} },
    },
    required: ['api_key'],
  },
};

const secrets = (existing: string[], granted: string[]): SecretLookup => ({
  secretExists: (n) => existing.includes(n),
  secretGranted: (n) => granted.includes(n),
});
const ok = secrets(['WEATHER_KEY', 'OTHER_KEY', 'UNREQUESTED'], ['WEATHER_KEY', 'UNREQUESTED']);

function refused(t: Test, config: unknown, message: RegExp, lookup: SecretLookup = ok, m: ConfigManifest = manifest) {
  let err: unknown;
  try {
    validatePluginConfig(m, config, lookup);
  } catch (e) {
    err = e;
  }
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_CONFIG_INVALID'), `refused: ${String(err)}`);
  t.match((err as Error | undefined)?.message ?? '', message);
  return (err as Error | undefined)?.message ?? '';
}

t.test('defaults are applied on a copy; the input is left untouched', async (t) => {
  const input = { api_key: 'WEATHER_KEY' };
  const out = validatePluginConfig(manifest, input, ok);
  t.same(out, { api_key: 'WEATHER_KEY', units: 'metric', retries: 2, nested: { label: 'x' } });
  t.same(input, { api_key: 'WEATHER_KEY' });
  const again = validatePluginConfig(manifest, { api_key: 'WEATHER_KEY' }, ok);
  t.not(again.nested, out.nested, 'object defaults are not shared between results');
});

t.test('schema violations name the field', async (t) => {
  refused(t, { api_key: 'WEATHER_KEY', retries: 9 }, /\/retries: must be <= 5/);
  refused(t, { api_key: 'WEATHER_KEY', units: 'kelvin' }, /\/units: must be equal to one of the allowed values/);
  refused(t, {}, /\/api_key: required field is missing/);
  refused(t, { api_key: 'WEATHER_KEY', retries: '2' }, /\/retries: must be integer/);
});

t.test('unknown top-level keys are refused even though the schema did not say additionalProperties: false', async (t) => {
  refused(t, { api_key: 'WEATHER_KEY', colour: 'blue' }, /\/: unknown key "colour"/);
});

t.test('a schema that explicitly allows extra keys keeps that choice', async (t) => {
  const open: ConfigManifest = { id: 'p', config_schema: { type: 'object', additionalProperties: { type: 'string' } } };
  t.same(validatePluginConfig(open, { anything: 'goes' }, ok), { anything: 'goes' });
  refused(t, { anything: 1 }, /\/anything: must be string/, ok, open);
});

t.test('a secret field accepts an existing, requested, granted handle name', async (t) => {
  t.equal(validatePluginConfig(manifest, { api_key: 'WEATHER_KEY', nested: { token: 'WEATHER_KEY' } }, ok).api_key, 'WEATHER_KEY');
});

t.test('a value-looking secret field is refused without echoing the value', async (t) => {
  for (const value of ['ghp_abcdefghijklmnopqrstuvwxyz0123456789', 'sk-live-51Hxyz', 'hunter2 with spaces']) {
    const msg = refused(t, { api_key: value }, /config \/api_key: a secret field takes the name of a secret handle \(e\.g\. GITHUB_TOKEN\), never a value/);
    t.notOk(msg.includes(value), 'the value is not in the message');
  }
  refused(t, { api_key: 'WEATHER_KEY', nested: { token: 'xoxb-123-456' } }, /config \/nested\/token: a secret field takes the name of a secret handle/);
});

t.test('a handle name that does not exist is refused without echoing it', async (t) => {
  const msg = refused(t, { api_key: 'AKIAIOSFODNN7EXAMPLE' }, /config \/api_key: no secret handle by that name exists/);
  t.notOk(msg.includes('AKIAIOSFODNN7EXAMPLE'));
});

t.test('an existing handle that is not requested or not granted is refused, naming field and handle', async (t) => {
  refused(t, { api_key: 'UNREQUESTED' }, /config \/api_key: secret handle UNREQUESTED is not among the secrets weather requests/);
  refused(t, { api_key: 'OTHER_KEY' }, /config \/api_key: secret handle OTHER_KEY is not granted to weather/);
  refused(t, { api_key: 'WEATHER_KEY' }, /is not granted/, secrets(['WEATHER_KEY'], []));
});

t.test('without a config_schema only {} is accepted', async (t) => {
  const bare: ConfigManifest = { id: 'bare' };
  t.same(validatePluginConfig(bare, {}, ok), {});
  refused(t, { a: 1 }, /bare declares no config_schema, so only \{\} is accepted \(unknown key "a"\)/, ok, bare);
});

t.test('non-object, non-JSON and hostile configs are refused', async (t) => {
  refused(t, [], /must be a JSON object/);
  refused(t, null, /must be a JSON object/);
  refused(t, 'x', /must be a JSON object/);
  refused(t, { api_key: 'WEATHER_KEY', f: () => 1 }, /config \/f: is a function, not JSON/);
  refused(t, { api_key: 'WEATHER_KEY', n: Number.NaN }, /config \/n: is not a finite number/);
  refused(t, JSON.parse('{"__proto__": {"polluted": true}}'), /key "__proto__" is not allowed/);
  refused(t, { api_key: 'WEATHER_KEY', big: 'x'.repeat(70 * 1024) }, /larger than 65536 bytes/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  refused(t, cyclic, /nests deeper than/);
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was polluted');
});

t.test('checking configs against a manifest read again and again compiles its schema once', async (t) => {
  const check = () => validatePluginConfig(JSON.parse(JSON.stringify(manifest)) as ConfigManifest, { api_key: 'WEATHER_KEY' }, ok);
  check();
  const before = compiledSchemaCount();
  for (let i = 0; i < 50; i++) check();
  t.same(compiledSchemaCount(), before, 'no validator compiled, or held by ajv, per re-read manifest');
});
