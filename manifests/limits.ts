/**
 * Named limits for everything read from a plugin package. Each bounds work or memory spent on
 * input a third party controls; all are checked before the expensive step they protect.
 */

/** Name of the manifest file at the root of a plugin directory or archive. */
export const MANIFEST_FILE = 'tyrum.plugin.json';

/** Largest manifest file accepted (bytes). */
export const MANIFEST_MAX_BYTES = 256 * 1024;
/** Deepest JSON nesting accepted in a manifest (objects and arrays, the root is depth 1). */
export const MANIFEST_MAX_DEPTH = 128;
/** Largest wasm module accepted (bytes). */
export const WASM_MAX_BYTES = 64 * 1024 * 1024;

/** Largest archive file accepted (bytes, as stored, compressed or not). */
export const ARCHIVE_MAX_BYTES = WASM_MAX_BYTES + 4 * 1024 * 1024;
/** Largest total of the archive's uncompressed tar stream (bytes): bounds gzip bombs. */
export const ARCHIVE_MAX_UNPACKED_BYTES = WASM_MAX_BYTES + 8 * 1024 * 1024;
/** Most entries (files and directories) accepted in an archive. */
export const ARCHIVE_MAX_ENTRIES = 64;
/** Longest entry path accepted in an archive (characters). */
export const ARCHIVE_MAX_PATH = 255;

/** Largest serialized JSON Schema accepted in a manifest (input/output/config schemas). */
export const SCHEMA_MAX_BYTES = 64 * 1024;
/** Deepest nesting accepted inside one JSON Schema (the schema object itself is depth 1). */
export const SCHEMA_MAX_DEPTH = 32;
/** Most subschemas one value may be checked against, following `$ref`s and combinators. */
export const SCHEMA_MAX_EXPANSION = 1000;
/** Largest `maxItems` allowed with `uniqueItems` on non-scalar items (pairwise comparison). */
export const SCHEMA_MAX_UNIQUE_ITEMS = 1000;
/** Longest `pattern` (or `patternProperties` key) accepted in a JSON Schema (characters). */
export const SCHEMA_MAX_PATTERN_LENGTH = 256;

/** Largest plugin configuration accepted (serialized bytes). */
export const CONFIG_MAX_BYTES = 64 * 1024;

/** Most schema issues listed in one error message. */
export const MAX_LISTED_ISSUES = 20;
