// The manifest contract is compiled on first use (or by a starting gateway, runtime.ts), not when
// manifests/json-schema.ts is imported: CLI commands that read no manifest (plugin list, policy
// show, mcp list) load the module through the registry and must not pay for the compile.
import t from 'tap';
import { Ajv } from 'ajv';

t.test('importing manifests/json-schema compiles nothing; the first manifest check compiles the contract once', async (t) => {
  const compile = Ajv.prototype.compile;
  let compiles = 0;
  Ajv.prototype.compile = function (this: Ajv, ...args: Parameters<Ajv['compile']>) {
    compiles++;
    return compile.apply(this, args);
  } as Ajv['compile'];
  t.teardown(() => {
    Ajv.prototype.compile = compile;
  });
  const { validateManifestShape, prepareSchemaValidators } = await import('../../manifests/json-schema.js');
  t.equal(compiles, 0, 'no schema compiled at import');
  t.not(validateManifestShape({}).length, 0, 'an empty manifest is refused');
  const after = compiles;
  t.ok(after >= 1, 'the contract was compiled for the first check');
  validateManifestShape({ id: 'x' });
  prepareSchemaValidators();
  t.equal(compiles, after, 'and not again');
});
