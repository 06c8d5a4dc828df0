/**
 * Everything about a plugin's files, as opposed to its runtime state:
 *
 * - reading a plugin from a directory or a packed archive, with every check that can be made
 *   before it runs ({@link readPluginSource}, {@link readPluginArchive}, {@link parseManifest});
 *   packing one deterministically ({@link packPlugin});
 * - its files in the gateway home, re-verified against the recorded digests on every load
 *   ({@link installPluginFiles}, {@link loadInstalledPlugin}, {@link removePluginFiles});
 * - its configuration against `config_schema` ({@link validatePluginConfig});
 * - version changes ({@link compareVersions}) and the two-key capability model (capabilities.ts);
 * - the safety screen for third-party JSON Schemas ({@link assertSafeJsonSchema}).
 *
 * The only importer of `tar`. Errors are TyrumErrors whose messages name the field or cause.
 */
export { readPluginSource, readPluginArchive, packPlugin, sha256Hex } from './source.js';
export type { PluginSource, ReadPluginOptions, ExpectedDigests } from './source.js';
export { parseManifest, checkManifestRules, manifestExports, RISK_IMPLIED_BY, SECRET_FIELD_MARKER } from './manifest.js';
export type { ManifestOptions } from './manifest.js';
export { installPluginFiles, loadInstalledPlugin, removePluginFiles, pluginFilesDir, pluginVersionDir } from './install.js';
export type { InstalledPluginFiles } from './install.js';
export { validatePluginConfig } from './config.js';
export type { SecretLookup } from './config.js';
export { compareVersions } from './versions.js';
export type { CompareOptions, VersionComparison } from './versions.js';
export { assertSafeJsonSchema, compiledSchemaCount, compilePluginSchema, forgetPluginSchema, toIssues } from './json-schema.js';
export type { SchemaIssue } from './json-schema.js';
export { patternHazard } from './regex-safety.js';
export * from './capabilities.js';
export * from './limits.js';
