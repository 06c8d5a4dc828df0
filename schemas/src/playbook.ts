/**
 * A playbook: a deterministic workflow spec (core/playbooks). Authors write it as YAML or JSON;
 * `tyrum playbook check` validates it against this schema, then checks what a schema cannot
 * (references to inputs and earlier steps, one action per step) and compiles the plan.
 */
import { Type } from '@sinclair/typebox';
import { JsonObject, Strict } from './common.js';

export const PLAYBOOK_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
export const PLAYBOOK_STEP_ID_PATTERN = '^[a-z][a-z0-9_]{0,31}$';
/** The most steps one playbook may have. */
export const PLAYBOOK_MAX_STEPS = 64;

const Template = (description: string, maxLength = 16_000) => Type.String({ minLength: 1, maxLength, description });

export const PlaybookCondition = Strict(
  {
    value: Template('What to test: a reference such as "${steps.fetch.output.count}" or "${inputs.channel}", or a string with references in it.', 1024),
    equals: Type.Optional(Type.Unknown({ description: 'True when the value equals this (deep JSON equality).' })),
    not_equals: Type.Optional(Type.Unknown({ description: 'True when the value differs from this.' })),
    exists: Type.Optional(Type.Boolean({ description: 'true: the value is present (not null/absent); false: it is absent.' })),
    matches: Type.Optional(Type.String({ maxLength: 256, description: 'A regular expression the value (as text) must match.' })),
  },
  { description: 'A step runs only when this holds (all given tests must pass); otherwise it is skipped and its output is null.' },
);

export const PlaybookStep = Strict(
  {
    id: Type.String({ pattern: PLAYBOOK_STEP_ID_PATTERN, description: 'The name later steps use to refer to this step ("${steps.<id>.output}").' }),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    tool: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Call this tool (its id as `tyrum tool list` shows it).' })),
    node: Type.Optional(
      Strict({
        capability: Type.String({ minLength: 1, maxLength: 128, description: 'A node capability, e.g. fs.write: the tool node.<capability>.' }),
        node: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Which node (its name or device id); needed when more than one approved node offers the capability.' })),
      }),
    ),
    agent: Type.Optional(Strict({ prompt: Template('The message the agent answers in a turn of its own conversation; references are filled in.') })),
    args: Type.Optional(Type.Unknown({ description: 'The tool or node arguments (a JSON object); strings may hold references.' })),
    if: Type.Optional(PlaybookCondition),
    approval: Type.Optional(
      Strict({
        message: Template('What the approver is asked; references are filled in.', 2000),
        expires_in_s: Type.Optional(Type.Integer({ minimum: 60, maximum: 30 * 86_400, description: 'How long the resume token stays valid (default 86400: one day). An expired gate fails the workflow.' })),
      }),
    ),
    postcondition: Type.Optional(
      Strict({
        path: Type.String({ maxLength: 1024, description: 'JSON pointer into the output, e.g. /status.' }),
        equals: Type.Optional(Type.Unknown()),
        exists: Type.Optional(Type.Literal(true)),
        matches: Type.Optional(Type.String({ maxLength: 256 })),
      }, { description: "Checked against the tool's output like a tool's declared postcondition; a step whose output fails it fails." }),
    ),
    retry: Type.Optional(
      Strict({
        max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'Attempts of a tool or node call (only idempotent tools are retried by the engine).' })),
        timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 300_000, description: 'Per attempt.' })),
      }),
    ),
  },
  { description: 'One step: a tool call, a node capability or an agent turn, optionally behind an approval gate; or only a gate.' },
);

export const Playbook = Strict(
  {
    name: Type.String({ pattern: PLAYBOOK_NAME_PATTERN }),
    version: Type.String({ minLength: 1, maxLength: 32 }),
    description: Type.Optional(Type.String({ maxLength: 4000 })),
    inputs: Type.Optional({ ...JsonObject, description: 'A JSON Schema (draft-07) for the inputs object; defaults are filled in.' }),
    steps: Type.Array(PlaybookStep, { minItems: 1, maxItems: PLAYBOOK_MAX_STEPS }),
  },
  { description: 'A playbook (docs/playbooks.md).' },
);

export const WORKFLOW_STATES = ['running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;
export const WORKFLOW_STEP_STATES = ['pending', 'started', 'succeeded', 'skipped', 'failed', 'cancelled'] as const;
export const WorkflowId = Type.String({ pattern: '^wf_[0-9a-f]{16}$' });
const Nullable = <T extends import('@sinclair/typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const lit = <T extends readonly string[]>(v: T) => Type.Union(v.map((x) => Type.Literal(x)));

export const WorkflowInfo = Strict({
  workflow_id: WorkflowId,
  name: Type.String(),
  version: Type.String(),
  plan_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  state: lit(WORKFLOW_STATES),
  step_idx: Type.Integer({ minimum: 0, description: 'The step being worked on (= the number of steps once finished successfully).' }),
  inputs: JsonObject,
  steps: Type.Array(
    Strict({
      idx: Type.Integer({ minimum: 0 }),
      id: Type.String(),
      kind: lit(['tool', 'agent', 'gate'] as const),
      tool_id: Nullable(Type.String()),
      state: lit(WORKFLOW_STEP_STATES),
      run_id: Nullable(Type.String()),
      conversation_id: Nullable(Type.String()),
      turn_id: Nullable(Type.String()),
      output: Type.Unknown({ description: "A tool step: the run's (redacted) output; an agent step: {text, conversation_id, turn_id}; a gate: {approved, decided_by, reason}; null when skipped or not reached." }),
      started_at: Nullable(Type.String()),
      finished_at: Nullable(Type.String()),
    }),
  ),
  gate: Nullable(Strict({ step_idx: Type.Integer({ minimum: 0 }), step_id: Type.String(), message: Type.String(), expires_at: Type.String() })),
  resume_token: Type.Optional(Nullable(Type.String({ description: "The paused gate's single-use resume token; only shown to a caller with operator.approvals." }))),
  error: Nullable(Strict({ code: Type.String(), wire: Type.String(), message: Type.String(), details: Type.Optional(JsonObject) })),
  created_by: Type.String(),
  created_at: Type.String(),
  updated_at: Type.String(),
  finished_at: Nullable(Type.String()),
});
