/**
 * Playbooks: parsing, checking and compiling a workflow spec into a plan.
 *
 * A playbook is YAML or JSON (the `yaml` package parses both: JSON is YAML). It is checked against
 * the `playbook` contract (schemas/src/playbook.ts), then for what a schema cannot say: each step
 * has one action (tool, node or agent) or is a pure approval gate; references name declared
 * inputs or *earlier* steps; args are an object. Compiling applies the inputs (validated against
 * the playbook's own JSON Schema, defaults filled in) and yields a plan whose hash covers the
 * normalised playbook and the inputs (RFC 8785 canonical JSON, core/util/canonical-json.ts): the same
 * file with the same inputs has the same plan hash.
 *
 * References are `${inputs.<name>...}` and `${steps.<id>.output...}` with dotted paths (a number
 * segment indexes an array). A string that is exactly one reference takes the referenced value as
 * is (an object stays an object); a reference inside a longer string is replaced by its text (JSON
 * for non-strings). Nothing else is evaluated: no expressions, no code.
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { Playbook as PlaybookSchema } from '../../schemas/src/playbook.js';
import { validate } from '../protocol/validate.js';
import { TyrumError } from '../errors/index.js';
import { compileConfigSchema, toIssues, issuesText } from '../../manifests/json-schema.js';
import { patternHazard } from '../../manifests/regex-safety.js';
import { canonicalJson } from '../util/canonical-json.js';

/** The largest playbook file accepted (bytes). */
export const PLAYBOOK_MAX_BYTES = 256 * 1024;
/** Default life of a resume token. */
export const GATE_EXPIRES_DEFAULT_S = 86_400;

export interface PlaybookCondition {
  value: string;
  equals?: unknown;
  not_equals?: unknown;
  exists?: boolean;
  matches?: string;
}

export interface PlaybookStepDoc {
  id: string;
  description?: string;
  tool?: string;
  node?: { capability: string; node?: string };
  agent?: { prompt: string };
  args?: unknown;
  if?: PlaybookCondition;
  approval?: { message: string; expires_in_s?: number };
  postcondition?: { path: string; equals?: unknown; exists?: true; matches?: string };
  retry?: { max_attempts?: number; timeout_ms?: number };
}

export interface PlaybookDoc {
  name: string;
  version: string;
  description?: string;
  inputs?: Record<string, unknown>;
  steps: PlaybookStepDoc[];
}

export type PlanStepKind = 'tool' | 'agent' | 'gate';

/** One compiled step: what the runner executes. Node steps are tool steps (node.<capability>[@node]). */
export interface PlanStep {
  idx: number;
  id: string;
  kind: PlanStepKind;
  tool_id: string | null;
  /** Templated: filled in when the step runs. */
  args: Record<string, unknown> | null;
  prompt: string | null;
  if: PlaybookCondition | null;
  approval: { message: string; expires_in_s: number } | null;
  postcondition: PlaybookStepDoc['postcondition'] | null;
  retry: { max_attempts?: number; timeout_ms?: number } | null;
}

export interface Plan {
  name: string;
  version: string;
  description: string | null;
  inputs: Record<string, unknown>;
  steps: PlanStep[];
  /** sha256 (hex) of the canonical JSON of the normalised playbook and the inputs. */
  plan_hash: string;
}

function invalid(message: string, details?: Record<string, unknown>): TyrumError {
  return new TyrumError('TYRUM_ERR_PLAYBOOK_INVALID', message, details);
}

/** Parses the text of a playbook file (YAML or JSON). Throws TYRUM_ERR_PLAYBOOK_INVALID. */
export function parsePlaybook(text: string, source = 'playbook'): PlaybookDoc {
  if (Buffer.byteLength(text) > PLAYBOOK_MAX_BYTES) throw invalid(`${source} is larger than ${PLAYBOOK_MAX_BYTES} bytes`);
  let doc: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs"); unique keys are required.
    doc = parseYaml(text, { maxAliasCount: 100, uniqueKeys: true, prettyErrors: true });
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw invalid(`${source} is not valid YAML or JSON${where}: ${(e as Error).message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  return checkPlaybook(doc, source);
}

const REF = /\$\{([^}]*)\}/g;
const REF_BODY = /^(inputs|steps)((?:\.[A-Za-z0-9_-]+)*)$/;

/** Every reference in a templated value (strings anywhere inside it). */
function referencesIn(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') for (const m of value.matchAll(REF)) out.push(m[1]!.trim());
  else if (Array.isArray(value)) for (const v of value) referencesIn(v, out);
  else if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) referencesIn(v, out);
  return out;
}

/** Checks a parsed document: the contract, then one action per step and references to declared inputs and earlier steps. */
export function checkPlaybook(doc: unknown, source = 'playbook'): PlaybookDoc {
  const issues = validate(PlaybookSchema, doc);
  if (issues.length > 0) throw invalid(`${source} does not match the playbook schema: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
  const pb = doc as PlaybookDoc;
  const inputProps = inputProperties(pb);
  const seen = new Set<string>();
  pb.steps.forEach((s, i) => {
    const at = `steps[${i}] (${s.id})`;
    if (seen.has(s.id)) throw invalid(`${at}: the step id "${s.id}" is used twice`, { step: s.id });
    const actions = [s.tool, s.node, s.agent].filter((a) => a !== undefined).length;
    if (actions > 1) throw invalid(`${at}: a step has one action: tool, node or agent`, { step: s.id });
    if (actions === 0 && s.approval === undefined) throw invalid(`${at}: give the step an action (tool, node or agent) or an approval gate`, { step: s.id });
    if (s.args !== undefined && (s.tool === undefined && s.node === undefined)) throw invalid(`${at}: args belong to a tool or node step`, { step: s.id });
    if (s.args !== undefined && (typeof s.args !== 'object' || s.args === null || Array.isArray(s.args))) throw invalid(`${at}: args must be an object`, { step: s.id });
    if ((s.postcondition !== undefined || s.retry !== undefined) && s.tool === undefined && s.node === undefined) throw invalid(`${at}: postcondition and retry apply to tool and node steps`, { step: s.id });
    if (s.if?.matches !== undefined) regex(s.if.matches, `${at}: if.matches`);
    for (const ref of referencesIn([s.args, s.agent?.prompt, s.if?.value, s.approval?.message])) {
      const m = REF_BODY.exec(ref);
      if (!m) throw invalid(`${at}: "\${${ref}}" is not a reference (use \${inputs.<name>} or \${steps.<id>.output})`, { step: s.id, reference: ref });
      const parts = m[2]!.split('.').slice(1);
      if (m[1] === 'inputs') {
        if (parts.length > 0 && inputProps !== null && !inputProps.has(parts[0]!)) throw invalid(`${at}: "\${${ref}}" names an input the playbook does not declare`, { step: s.id, reference: ref });
      } else {
        if (parts.length < 2 || parts[1] !== 'output') throw invalid(`${at}: "\${${ref}}" must read a step's output: \${steps.<id>.output...}`, { step: s.id, reference: ref });
        if (!seen.has(parts[0]!)) throw invalid(`${at}: "\${${ref}}" names a step that does not run before this one`, { step: s.id, reference: ref });
      }
    }
    seen.add(s.id);
  });
  return pb;
}

function inputProperties(pb: PlaybookDoc): Set<string> | null {
  const props = pb.inputs?.properties;
  if (pb.inputs === undefined) return new Set();
  if (typeof props !== 'object' || props === null) return pb.inputs.additionalProperties === false ? new Set() : null;
  return pb.inputs.additionalProperties === false ? new Set(Object.keys(props)) : null;
}

function regex(source: string, label: string): RegExp {
  // The tested value can be a tool's output: refuse patterns that backtrack catastrophically.
  const hazard = patternHazard(source);
  if (hazard) throw invalid(`${label} ${hazard}`);
  try {
    return new RegExp(source, 'u');
  } catch (e) {
    throw invalid(`${label} is not a valid regular expression: ${(e as Error).message}`);
  }
}

/** Validates the inputs against the playbook's schema (defaults filled in) and compiles the plan. */
export function compilePlaybook(pb: PlaybookDoc, inputs: Record<string, unknown>): Plan {
  const values = structuredClone(inputs);
  const schema = pb.inputs ?? { type: 'object', additionalProperties: false };
  let check;
  try {
    check = compileConfigSchema(schema, 'inputs', (s) => s);
  } catch (e) {
    throw invalid(`the playbook's inputs schema is refused: ${(e as Error).message}`);
  }
  if (!check(values)) throw invalid(`the inputs do not match the playbook's inputs schema: ${issuesText(toIssues(check.errors))}`, { issues: toIssues(check.errors) });
  const steps: PlanStep[] = pb.steps.map((s, idx) => ({
    idx,
    id: s.id,
    kind: s.tool !== undefined || s.node !== undefined ? 'tool' : s.agent !== undefined ? 'agent' : 'gate',
    tool_id: s.tool ?? (s.node ? `node.${s.node.capability}${s.node.node !== undefined ? `@${s.node.node}` : ''}` : null),
    args: s.tool !== undefined || s.node !== undefined ? ((s.args as Record<string, unknown> | undefined) ?? {}) : null,
    prompt: s.agent?.prompt ?? null,
    if: s.if ?? null,
    approval: s.approval ? { message: s.approval.message, expires_in_s: s.approval.expires_in_s ?? GATE_EXPIRES_DEFAULT_S } : null,
    postcondition: s.postcondition ?? null,
    retry: s.retry ?? null,
  }));
  const normalised = { name: pb.name, version: pb.version, description: pb.description ?? null, inputs_schema: pb.inputs ?? null, steps };
  const plan_hash = createHash('sha256').update(canonicalJson({ playbook: normalised, inputs: values })).digest('hex');
  return { name: pb.name, version: pb.version, description: pb.description ?? null, inputs: values, steps, plan_hash };
}

/** What references read: the inputs and the outputs of the steps so far (by step id). */
export interface Scope {
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

function lookup(ref: string, scope: Scope): unknown {
  const m = REF_BODY.exec(ref.trim());
  if (!m) return undefined;
  const parts = m[2]!.split('.').slice(1);
  let cur: unknown;
  if (m[1] === 'inputs') cur = scope.inputs;
  else {
    // steps.<id>.output...
    cur = Object.hasOwn(scope.outputs, parts[0]!) ? scope.outputs[parts[0]!] : undefined;
    parts.splice(0, 2);
  }
  for (const p of parts) {
    if (cur === null || cur === undefined) return undefined;
    if (Array.isArray(cur) && /^\d+$/.test(p)) cur = cur[Number(p)];
    else if (typeof cur === 'object' && Object.hasOwn(cur, p)) cur = (cur as Record<string, unknown>)[p];
    else return undefined;
  }
  return cur;
}

/**
 * Fills the references of a templated value. A reference to something absent throws
 * TYRUM_ERR_PLAYBOOK_REFERENCE (a step cannot run on a value that is not there); `lenient`
 * (conditions) turns it into undefined instead.
 */
export function fill(value: unknown, scope: Scope, lenient = false): unknown {
  if (typeof value === 'string') {
    const whole = /^\$\{([^}]*)\}$/.exec(value);
    if (whole) {
      const v = lookup(whole[1]!, scope);
      if (v === undefined && !lenient) throw new TyrumError('TYRUM_ERR_PLAYBOOK_REFERENCE', `"${value}" refers to nothing (the input or output path is absent)`, { reference: whole[1]!.trim() });
      return v;
    }
    return value.replace(REF, (_, ref: string) => {
      const v = lookup(ref, scope);
      if (v === undefined) {
        if (lenient) return '';
        throw new TyrumError('TYRUM_ERR_PLAYBOOK_REFERENCE', `"\${${ref}}" refers to nothing (the input or output path is absent)`, { reference: ref.trim() });
      }
      return typeof v === 'string' ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => fill(v, scope, lenient));
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, scope, lenient)]));
  return value;
}

/** Whether a step's condition holds (all of its tests). */
export function conditionHolds(c: PlaybookCondition, scope: Scope): boolean {
  const v = fill(c.value, scope, true);
  const present = v !== undefined && v !== null && v !== '';
  if (c.exists !== undefined && c.exists !== present) return false;
  if (Object.hasOwn(c, 'equals') && canonicalJson(v ?? null) !== canonicalJson(c.equals)) return false;
  if (Object.hasOwn(c, 'not_equals') && canonicalJson(v ?? null) === canonicalJson(c.not_equals)) return false;
  if (c.matches !== undefined && !regex(c.matches, 'if.matches').test(typeof v === 'string' ? v : JSON.stringify(v ?? null))) return false;
  return true;
}
