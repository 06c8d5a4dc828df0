/**
 * Built-in node capability contracts. A node that advertises one of these ids advertises no
 * schemas of its own: the gateway enforces the contract written here, so a node cannot loosen
 * (for example) fs.write's input. The headless node (sdk/node/headless) implements them.
 *
 * Paths are always relative to the node's workspace; the node refuses absolute paths and `..`
 * segments itself (it does not normalize). Sizes are in bytes.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Strict } from './common.js';

/** A capability id: two to five dot-separated lowercase segments, e.g. `fs.read`, `camera.capture_photo`. */
export const CAPABILITY_ID_PATTERN = '^[a-z][a-z0-9_]{0,31}(\\.[a-z][a-z0-9_]{0,31}){1,4}$';

/** Largest fs.read slice and fs.write content: base64 of it plus the envelope fits the 1 MiB frame. */
export const FS_MAX_TRANSFER_BYTES = 524_288;

const Sha256Hex = (description = 'Lowercase hex SHA-256.') => Type.String({ pattern: '^[0-9a-f]{64}$', description });
const WorkspacePath = (options: { default?: string } = {}) =>
  Type.String({ minLength: 1, maxLength: 4096, description: 'Relative to the workspace root (`.` is the root); no absolute paths, no `..` or `.` segments, no empty segments, no backslashes.', ...options });
const Encoding = (options: { default?: string; description?: string } = {}) => Type.Union([Type.Literal('utf8'), Type.Literal('base64')], options);

export const FsListInput = Strict({
  path: Type.Optional(WorkspacePath({ default: '.' })),
  max_entries: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});
export const FsListOutput = Strict({
  entries: Type.Array(
    Strict({
      name: Type.String(),
      type: Type.Union([Type.Literal('file'), Type.Literal('dir'), Type.Literal('symlink'), Type.Literal('other')]),
      size: Type.Integer({ minimum: 0 }),
      mtime: Type.String({ format: 'date-time' }),
    }),
    { maxItems: 1000 },
  ),
  truncated: Type.Boolean(),
});

export const FsReadInput = Strict({
  path: WorkspacePath(),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  length: Type.Optional(Type.Integer({ minimum: 0, maximum: FS_MAX_TRANSFER_BYTES })),
  encoding: Type.Optional(Encoding({ description: 'Default: utf8 when the bytes are valid UTF-8, base64 otherwise.' })),
});
export const FsReadOutput = Strict({
  content: Type.String(),
  encoding: Encoding(),
  size: Type.Integer({ minimum: 0, description: 'Size of the whole file.' }),
  sha256: Sha256Hex('Digest of the whole file, not only of the slice returned.'),
  truncated: Type.Boolean({ description: 'The slice returned ends before the end of the file.' }),
});

export const FsWriteInput = Strict({
  path: WorkspacePath(),
  content: Type.String({ maxLength: Math.ceil(FS_MAX_TRANSFER_BYTES / 3) * 4, description: 'At most 512 KiB once decoded.' }),
  encoding: Type.Optional(Encoding({ default: 'utf8' })),
  create_dirs: Type.Optional(Type.Boolean({ description: 'Create missing parent directories (never through a symlink).' })),
  expected_sha256: Type.Optional(
    Type.Union([Sha256Hex(), Type.Null()], {
      description: 'Compare-and-swap: the digest the current file must have, or null for "must not exist". A mismatch is a conflict.',
    }),
  ),
});
export const FsWriteOutput = Strict({
  size: Type.Integer({ minimum: 0 }),
  sha256: Sha256Hex(),
  created: Type.Boolean({ description: 'Nothing existed at the path before.' }),
});

export const FsSearchInput = Strict({
  query: Type.String({ minLength: 1, maxLength: 256, description: 'Literal text (not a regular expression), matched per line.' }),
  path: Type.Optional(WorkspacePath({ default: '.' })),
  glob: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Only files whose relative path matches (`*`, `**`, `?`); a glob without `/` matches the file name.' })),
  max_results: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
});
export const FsSearchOutput = Strict({
  matches: Type.Array(Strict({ path: Type.String(), line: Type.Integer({ minimum: 1 }), text: Type.String() }), { maxItems: 200 }),
  files_scanned: Type.Integer({ minimum: 0 }),
  truncated: Type.Boolean({ description: 'A limit (results, files scanned, time) stopped the search early.' }),
});

export const ShellExecInput = Strict({
  argv: Type.Array(Type.String({ maxLength: 4096 }), { minItems: 1, maxItems: 64, description: 'argv[0] must be a command the node allows; elements are passed literally, never through a shell.' }),
  cwd: Type.Optional(WorkspacePath({ default: '.' })),
  timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 300_000 })),
  stdin: Type.Optional(Type.String({ maxLength: 65_536 })),
});
export const ShellExecOutput = Strict({
  exit_code: Type.Union([Type.Integer(), Type.Null()]),
  signal: Type.Union([Type.String(), Type.Null()]),
  timed_out: Type.Boolean(),
  stdout: Type.String(),
  stderr: Type.String(),
  stdout_truncated: Type.Boolean(),
  stderr_truncated: Type.Boolean(),
  duration_ms: Type.Integer({ minimum: 0 }),
});

/** browser.notify: a notification shown by a browser node (the embedded node of the operator UI). */
export const BrowserNotifyInput = Strict({
  title: Type.String({ minLength: 1, maxLength: 200 }),
  body: Type.Optional(Type.String({ maxLength: 1000 })),
  tag: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A notification with the same tag replaces the previous one.' })),
});
export const BrowserNotifyOutput = Strict({
  shown: Type.Literal(true),
  shown_at: Type.String({ format: 'date-time' }),
});

/** browser.location: the browser node's position (the browser's geolocation, behind its permission prompt). */
export const BrowserLocationInput = Strict({
  max_age_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000, description: 'Accept a cached position at most this old (default 0: a fresh one).' })),
  high_accuracy: Type.Optional(Type.Boolean()),
});
export const BrowserLocationOutput = Strict({
  latitude: Type.Number({ minimum: -90, maximum: 90 }),
  longitude: Type.Number({ minimum: -180, maximum: 180 }),
  accuracy_m: Type.Number({ minimum: 0 }),
  at: Type.String({ format: 'date-time' }),
});

export const SysNoopInput = Strict({});
export const SysNoopOutput = Strict({ ok: Type.Literal(true) });

export type FsListInput = Static<typeof FsListInput>;
export type FsListOutput = Static<typeof FsListOutput>;
export type FsReadInput = Static<typeof FsReadInput>;
export type FsReadOutput = Static<typeof FsReadOutput>;
export type FsWriteInput = Static<typeof FsWriteInput>;
export type FsWriteOutput = Static<typeof FsWriteOutput>;
export type FsSearchInput = Static<typeof FsSearchInput>;
export type FsSearchOutput = Static<typeof FsSearchOutput>;
export type ShellExecInput = Static<typeof ShellExecInput>;
export type ShellExecOutput = Static<typeof ShellExecOutput>;

/** A capability contract: what the gateway enforces for a built-in id. */
export interface CapabilityContract {
  readonly id: string;
  readonly version: string;
  readonly description: string;
  /** Safe to re-run after an unknown outcome (the engine retries it on a disconnect). */
  readonly idempotent: boolean;
  readonly default_timeout_ms: number;
  readonly input_schema: TSchema;
  readonly output_schema: TSchema;
}

function contract<I extends TSchema, O extends TSchema>(c: { id: string; description: string; idempotent: boolean; default_timeout_ms: number; input_schema: I; output_schema: O }) {
  return { version: '1', ...c } as const;
}

export const BUILTIN_CAPABILITIES = {
  'fs.list': contract({
    id: 'fs.list',
    description: 'List a directory of the node workspace (symlinks are reported, never followed).',
    idempotent: true,
    default_timeout_ms: 10_000,
    input_schema: FsListInput,
    output_schema: FsListOutput,
  }),
  'fs.read': contract({
    id: 'fs.read',
    description: 'Read a regular file of the node workspace, or a slice of it (at most 512 KiB).',
    idempotent: true,
    default_timeout_ms: 10_000,
    input_schema: FsReadInput,
    output_schema: FsReadOutput,
  }),
  'fs.search': contract({
    id: 'fs.search',
    description: 'Search the text files of a workspace directory, recursively, for a literal string.',
    idempotent: true,
    default_timeout_ms: 10_000,
    input_schema: FsSearchInput,
    output_schema: FsSearchOutput,
  }),
  // Writing the same bytes twice gives the same end state, but the "before" evidence differs.
  'fs.write': contract({
    id: 'fs.write',
    description: 'Write a file of the node workspace atomically (replace, never write through); optional compare-and-swap on its digest.',
    idempotent: false,
    default_timeout_ms: 10_000,
    input_schema: FsWriteInput,
    output_schema: FsWriteOutput,
  }),
  'shell.exec': contract({
    id: 'shell.exec',
    description: 'Run a command the node allows, without a shell, in a workspace directory; output capped.',
    idempotent: false,
    default_timeout_ms: 60_000,
    input_schema: ShellExecInput,
    output_schema: ShellExecOutput,
  }),
  'browser.notify': contract({
    id: 'browser.notify',
    description: "Show a notification in the node's browser (needs the browser's notification permission; the node reports it not ready without it).",
    idempotent: false,
    default_timeout_ms: 10_000,
    input_schema: BrowserNotifyInput,
    output_schema: BrowserNotifyOutput,
  }),
  'browser.location': contract({
    id: 'browser.location',
    description: "The position of the node's browser (needs the browser's location permission; the node reports it not ready without it).",
    idempotent: true,
    default_timeout_ms: 20_000,
    input_schema: BrowserLocationInput,
    output_schema: BrowserLocationOutput,
  }),
  'sys.noop': contract({
    id: 'sys.noop',
    description: 'Do nothing and answer ok (for tests and benchmarks).',
    idempotent: true,
    default_timeout_ms: 5_000,
    input_schema: SysNoopInput,
    output_schema: SysNoopOutput,
  }),
} as const satisfies Record<string, CapabilityContract>;

export type BuiltinCapabilityId = keyof typeof BUILTIN_CAPABILITIES;

/** The built-in contract for `id`, or undefined for a custom capability. */
export function builtinCapability(id: string): CapabilityContract | undefined {
  return Object.hasOwn(BUILTIN_CAPABILITIES, id) ? BUILTIN_CAPABILITIES[id as BuiltinCapabilityId] : undefined;
}
