/**
 * `tyrum playbook check|run|resume|cancel|get|list`: playbooks (core/playbooks). `check` works on
 * the file alone; the others go through a running gateway (workflow.* over the protocol).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { withClient, CLIENT_FLAGS, remoteError } from './client.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum playbook check FILE [--input K=V]... [--input K:=JSON]... [--json]
                                                    validate; print the compiled plan and its hash
  tyrum playbook run FILE [--input K=V]... [--idempotency-key KEY] [--wait-ms N] [--json]
                                                    start a workflow; exit 0 done, 3 waiting (a gate or an approval), 1 failed
  tyrum playbook resume TOKEN [--deny] [--reason TEXT] [--json]
                                                    decide the approval gate the token was issued for (single use)
  tyrum playbook get WORKFLOW_ID [--json]           a workflow's steps, outputs and the gate it waits at (with its token)
  tyrum playbook list [--state running|paused|succeeded|failed|cancelled] [--json]
  tyrum playbook cancel WORKFLOW_ID

--input name=text gives a string; --input name:=JSON gives any JSON value (a number, true, a list...).`;

const FLAGS = {
  ...CLIENT_FLAGS,
  input: { type: 'string', multiple: true },
  'idempotency-key': { type: 'string' },
  'wait-ms': { type: 'string' },
  deny: { type: 'boolean' },
  reason: { type: 'string' },
  state: { type: 'string' },
} as const;

interface WorkflowInfo {
  workflow_id: string;
  name: string;
  version: string;
  plan_hash: string;
  state: string;
  step_idx: number;
  steps: Array<{ idx: number; id: string; kind: string; tool_id: string | null; state: string; run_id: string | null; conversation_id: string | null; turn_id: string | null; output: unknown }>;
  gate: { step_idx: number; step_id: string; message: string; expires_at: string } | null;
  resume_token?: string | null;
  error: { code: string; message: string } | null;
  created_at: string;
  finished_at: string | null;
}

/** `--input a=b --input n:=3` → { a: 'b', n: 3 }. */
export function parseInputs(list: string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of list ?? []) {
    const json = /^([A-Za-z_][A-Za-z0-9_-]*):=(.*)$/s.exec(item);
    const text = /^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$/s.exec(item);
    if (json) {
      try {
        out[json[1]!] = JSON.parse(json[2]!);
      } catch {
        throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--input ${json[1]}:= needs JSON after ":=" (got ${JSON.stringify(json[2])}); use ${json[1]}=TEXT for a string`);
      }
    } else if (text) out[text[1]!] = text[2]!;
    else throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--input takes NAME=TEXT or NAME:=JSON, got ${JSON.stringify(item)}`);
  }
  return out;
}

/** Reads and parses a playbook file (TYRUM_ERR_PLAYBOOK_INVALID when it is not one). */
export async function loadPlaybook(file: string): Promise<{ doc: Record<string, unknown>; path: string }> {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { parsePlaybook } = await import('../playbooks/spec.js');
  return { doc: parsePlaybook(text, path) as unknown as Record<string, unknown>, path };
}

export async function playbookCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, FLAGS, 1);
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  switch (sub) {
    case 'check': {
      const file = need(positionals[0], 'FILE', 'tyrum playbook check FILE [--input K=V]...');
      const { doc } = await loadPlaybook(file);
      const { checkPlaybook, compilePlaybook } = await import('../playbooks/spec.js');
      const plan = compilePlaybook(checkPlaybook(doc), parseInputs(values.input));
      if (values.json) {
        io.out(JSON.stringify(plan));
        return 0;
      }
      io.out(`playbook ${plan.name} ${plan.version}: ok, ${plan.steps.length} step(s)`);
      io.out(`plan hash ${plan.plan_hash}`);
      io.out(`inputs ${JSON.stringify(plan.inputs)}`);
      for (const s of plan.steps) {
        const what = s.kind === 'tool' ? `tool ${s.tool_id} ${JSON.stringify(s.args)}` : s.kind === 'agent' ? `agent turn: ${JSON.stringify(s.prompt)}` : 'approval gate only';
        io.out(`  ${s.idx}. ${s.id}: ${what}`);
        if (s.if) io.out(`       if ${JSON.stringify(s.if)}`);
        if (s.approval) io.out(`       approval gate first: ${JSON.stringify(s.approval.message)} (token valid ${s.approval.expires_in_s} s)`);
        if (s.postcondition) io.out(`       postcondition ${JSON.stringify(s.postcondition)}`);
        if (s.retry) io.out(`       retry ${JSON.stringify(s.retry)}`);
      }
      return 0;
    }
    case 'run': {
      const file = need(positionals[0], 'FILE', 'tyrum playbook run FILE [--input K=V]...');
      const inputs = parseInputs(values.input);
      const { doc } = await loadPlaybook(file);
      const waitMs = values['wait-ms'] === undefined ? 30_000 : Number(values['wait-ms']);
      if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 120_000) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--wait-ms must be an integer from 0 to 120000');
      return withClient(values, async (client) => {
        const payload: Record<string, unknown> = { playbook: doc, inputs, wait_ms: waitMs };
        if (values['idempotency-key'] !== undefined) payload.idempotency_key = values['idempotency-key'];
        const r = await client.request<{ workflow: WorkflowInfo }>('workflow.start', payload, { timeoutMs: waitMs + 30_000 }).catch(remoteError);
        return report(r.workflow, values.json === true, io);
      });
    }
    case 'resume': {
      const token = need(positionals[0], 'TOKEN', 'tyrum playbook resume TOKEN [--deny] [--reason TEXT]');
      return withClient(values, async (client) => {
        const payload: Record<string, unknown> = { token, decision: values.deny ? 'deny' : 'approve', wait_ms: 30_000 };
        if (values.reason !== undefined) payload.reason = values.reason;
        const r = await client.request<{ workflow: WorkflowInfo }>('workflow.resume', payload, { timeoutMs: 60_000 }).catch(remoteError);
        return report(r.workflow, values.json === true, io);
      });
    }
    case 'get': {
      const id = need(positionals[0], 'WORKFLOW_ID', 'tyrum playbook get WORKFLOW_ID [--json]');
      return withClient(values, async (client) => {
        const r = await client.request<{ workflow: WorkflowInfo }>('workflow.get', { workflow_id: id }).catch(remoteError);
        if (values.json) io.out(JSON.stringify(r.workflow));
        else io.out(describe(r.workflow));
        return 0;
      });
    }
    case 'list':
      return withClient(values, async (client) => {
        const r = await client.request<{ workflows: WorkflowInfo[] }>('workflow.list', values.state ? { state: values.state } : {}).catch(remoteError);
        if (values.json) io.out(JSON.stringify(r));
        else for (const w of r.workflows) io.out([w.workflow_id, `${w.name}@${w.version}`, w.state + (w.gate ? ` (gate ${w.gate.step_id})` : ''), w.created_at].join('\t'));
        return 0;
      });
    case 'cancel': {
      const id = need(positionals[0], 'WORKFLOW_ID', 'tyrum playbook cancel WORKFLOW_ID');
      return withClient(values, async (client) => {
        const r = await client.request<{ workflow: WorkflowInfo }>('workflow.cancel', { workflow_id: id }).catch(remoteError);
        io.out(`workflow ${r.workflow.workflow_id} ${r.workflow.state}`);
        return 0;
      });
    }
    default:
      throw subcommandError('playbook', sub);
  }
}

/** Prints a workflow after run/resume and picks the exit code: 0 done, 3 waiting, 1 failed or cancelled. */
function report(w: WorkflowInfo, json: boolean, io: Io): number {
  if (json) io.out(JSON.stringify(w));
  else io.out(describe(w));
  if (w.state === 'succeeded') return 0;
  if (w.state === 'paused') {
    if (!json) io.err(w.resume_token ? `waiting at gate "${w.gate?.step_id}": approve with: tyrum playbook resume ${w.resume_token}  (or --deny)` : `waiting at gate "${w.gate?.step_id}"; a token with operator.approvals sees its resume token (tyrum playbook get ${w.workflow_id})`);
    return 3;
  }
  if (w.state === 'running') {
    const step = w.steps[w.step_idx];
    if (!json) io.err(`workflow ${w.workflow_id} is still running${step?.run_id ? ` (step "${step.id}": run ${step.run_id}; it may wait for an approval: tyrum approvals list)` : ''}; follow it with: tyrum playbook get ${w.workflow_id}`);
    return 3;
  }
  return 1;
}

function brief(v: unknown, max = 200): string {
  const text = JSON.stringify(v) ?? 'null';
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars; --json for all)` : text;
}

function describe(w: WorkflowInfo): string {
  const lines = [`workflow ${w.workflow_id} (${w.name} ${w.version}): ${w.state}`, `  plan hash ${w.plan_hash}; started ${w.created_at}${w.finished_at ? `; finished ${w.finished_at}` : ''}`];
  if (w.error) lines.push(`  error: ${w.error.message} [${w.error.code}]`);
  for (const s of w.steps) {
    const what = s.kind === 'tool' ? s.tool_id : s.kind === 'agent' ? 'agent turn' : 'gate';
    const refs = [s.run_id ? `run ${s.run_id}` : '', s.conversation_id ? `conversation ${s.conversation_id}` : ''].filter(Boolean).join(', ');
    lines.push(`  ${s.idx}. ${s.id} (${what}): ${s.state}${refs ? ` [${refs}]` : ''}`);
    if (s.state === 'succeeded') lines.push(`       output: ${brief(s.output)}`);
  }
  if (w.gate) {
    lines.push(`  waits at gate "${w.gate.step_id}" (until ${w.gate.expires_at}): ${w.gate.message}`);
    if (w.resume_token) lines.push(`  resume token: ${w.resume_token}`);
  }
  return lines.join('\n');
}
