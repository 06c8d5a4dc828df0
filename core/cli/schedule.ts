/**
 * `tyrum schedule add|list|pause|resume|remove|next`: schedules, on the gateway home directly (a
 * running gateway picks changes up at once; its scheduler fires them). See docs/scheduler.md.
 */
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { cliActor as who, intArg, withHome } from './home.js';
import type { HomeServices } from '../runtime.js';
import type { MissedPolicy, ScheduleRow } from '../store/index.js';
import type { ScheduleTarget } from '../scheduler/types.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum schedule add NAME (--cron EXPR [--tz ZONE] | --every DURATION | --heartbeat DURATION)
                     (--tool TOOL_ID [--args JSON] | --prompt TEXT | --playbook FILE [--input K=V]...)
                     [--missed skip|catch_up_once] [--json]
        --cron       a cron expression: 5 fields (minute hour day month weekday), or 6 with seconds
                     first, or @hourly/@daily/...; in --tz, an IANA zone (default UTC)
        --every      a fixed interval from now: 30s, 5m, 1h, 1d (at least 1s)
        --heartbeat  an interval that starts an agent turn with --prompt (default "heartbeat: check in")
                     in the heartbeat's own conversation; never queues a second one while one waits
        --tool       each fire is a tool call through the gateway's pipeline (policy, approvals, audit)
        --prompt     each fire is a message that starts an agent turn in the schedule's conversation
        --playbook   each fire starts a workflow of this playbook (as the file is now: add the schedule
                     again to pick up a change), with its --input values (docs/playbooks.md)
        --missed     ticks missed while the gateway was down: skip them (default) or fire once for all
  tyrum schedule list [--json]
  tyrum schedule pause NAME | resume NAME | remove NAME
  tyrum schedule next NAME [--count N] [--json]       the next fire times, in the schedule's zone and UTC`;

/** --args: a JSON object. */
function argsJson(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--args is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object, e.g. --args \'{"url":"https://example.com"}\'');
  return v as Record<string, unknown>;
}

/** True when the tool is served now by an enabled plugin or an approved MCP server (node tools are resolved when fired). */
function toolKnown(svc: HomeServices, toolId: string): boolean {
  if (toolId.startsWith('node.')) return true;
  const enabled = svc.plugins.enabled();
  if (enabled.some((p) => p.manifest.contributes.tools.some((t) => `${p.record.id}.${t.id}` === toolId))) return true;
  return toolId.startsWith('mcp.') && svc.mcp.served(new Set(enabled.map((p) => p.record.id))).some((m) => m.tool_id === toolId);
}

export async function scheduleCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(
    rest,
    {
      home: { type: 'string' },
      json: { type: 'boolean' },
      cron: { type: 'string' },
      tz: { type: 'string' },
      every: { type: 'string' },
      heartbeat: { type: 'string' },
      tool: { type: 'string' },
      args: { type: 'string' },
      prompt: { type: 'string' },
      playbook: { type: 'string' },
      input: { type: 'string', multiple: true },
      missed: { type: 'string' },
      count: { type: 'string' },
    },
    1,
  );
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  const { Scheduler, parseDuration, formatDuration, zonedIso } = await import('../scheduler/index.js');
  const scheduler = (svc: HomeServices) => new Scheduler({ store: svc.store, events: svc.approvals.events, audit: svc.audit, owner: 'cli' });
  const timing = (r: ScheduleRow) => (r.kind === 'cron' ? `cron "${r.cron}" ${r.timezone}` : `${r.kind === 'heartbeat' ? 'heartbeat' : 'every'} ${formatDuration(r.every_ms!)}`);
  const when = (t: number | null, zone: string) => (t === null ? null : { local: zonedIso(t, zone), utc: new Date(t).toISOString() });
  switch (sub) {
    case 'add': {
      const form = 'tyrum schedule add NAME (--cron EXPR [--tz ZONE] | --every DURATION | --heartbeat DURATION) (--tool TOOL_ID [--args JSON] | --prompt TEXT)';
      const name = need(positionals[0], 'NAME', form);
      if ([values.tool, values.prompt, values.playbook].filter((v) => v !== undefined).length > 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give one of --tool, --prompt or --playbook');
      if (values.input !== undefined && values.playbook === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--input goes with --playbook FILE');
      if (values.args !== undefined && values.tool === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args goes with --tool TOOL_ID');
      if (values.tz !== undefined && values.cron === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--tz goes with --cron (an interval is the same in every zone)');
      const missed = values.missed ?? 'skip';
      if (missed !== 'skip' && missed !== 'catch_up_once') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--missed must be skip or catch_up_once, got "${missed}"`);
      let target: ScheduleTarget | undefined = values.tool !== undefined ? { type: 'tool' as const, tool_id: values.tool, args: argsJson(values.args) } : values.prompt !== undefined ? { type: 'agent_turn' as const, prompt: values.prompt } : undefined;
      if (values.playbook !== undefined) {
        const { loadPlaybook, parseInputs } = await import('./playbook.js');
        target = { type: 'playbook', playbook: (await loadPlaybook(values.playbook)).doc, inputs: parseInputs(values.input) };
      }
      const input = {
        name,
        ...(values.cron !== undefined ? { cron: values.cron } : {}),
        ...(values.tz !== undefined ? { timezone: values.tz } : {}),
        ...(values.every !== undefined ? { every_ms: parseDuration(values.every, '--every') } : {}),
        ...(values.heartbeat !== undefined ? { heartbeat_ms: parseDuration(values.heartbeat, '--heartbeat') } : {}),
        ...(target !== undefined ? { target } : {}),
        missed: missed as MissedPolicy,
      };
      return withHome(values.home, async (svc) => {
        const row = await scheduler(svc).add(input, who());
        // A tool that is not enabled yet is allowed (it may be enabled later): warn, do not refuse.
        const toolId = target?.type === 'tool' ? target.tool_id : null;
        const unknownTool = toolId !== null && !toolKnown(svc, toolId);
        if (unknownTool) io.err(`warning: no enabled plugin or approved MCP server serves ${toolId} now; its fires will fail with TYRUM_ERR_NOT_FOUND until one does`);
        if (target?.type === 'agent_turn' || row.kind === 'heartbeat') {
          if (svc.store.conversations.backend('default') === undefined) io.err('warning: no model backend is configured; its turns will fail until one is (tyrum backend set ...)');
        }
        const next = when(row.next_fire_at, row.timezone);
        if (values.json) io.out(JSON.stringify({ schedule_id: row.id, name: row.name, kind: row.kind, next_fire_at: next, ...(unknownTool ? { warnings: ['tool_not_found'] } : {}) }));
        else io.out(`added schedule ${row.name} (${timing(row)}); next fire ${next?.local ?? 'never'}${row.timezone === 'UTC' ? '' : ` (${next?.utc} UTC)`}`);
        return 0;
      });
    }
    case 'list':
      return withHome(values.home, async (svc) => {
        const rows = scheduler(svc).list();
        if (values.json) {
          io.out(
            JSON.stringify({
              schedules: rows.map((r) => ({
                schedule_id: r.id,
                name: r.name,
                kind: r.kind,
                cron: r.cron,
                timezone: r.timezone,
                every_ms: r.every_ms,
                target: JSON.parse(r.target) as unknown,
                missed_policy: r.missed_policy,
                state: r.state,
                next_fire_at: when(r.next_fire_at, r.timezone),
                last_fire_at: r.last_fire_at === null ? null : new Date(r.last_fire_at).toISOString(),
                fires: r.fires,
                missed: r.missed,
                created_at: new Date(r.created_at).toISOString(),
              })),
            }),
          );
        } else if (rows.length === 0) io.out('no schedules (tyrum schedule add ...)');
        else {
          for (const r of rows) {
            const t = JSON.parse(r.target) as { type: string; tool_id?: string };
            io.out([r.name, r.state, timing(r), t.type === 'tool' ? `tool ${t.tool_id}` : t.type === 'playbook' ? `playbook ${String((t as { playbook?: { name?: unknown } }).playbook?.name)}` : 'agent turn', `next ${when(r.next_fire_at, r.timezone)?.local ?? '-'}`, `fires ${r.fires}`, `missed ${r.missed} (${r.missed_policy})`].join('\t'));
          }
        }
        return 0;
      });
    case 'pause':
    case 'resume': {
      const name = need(positionals[0], 'NAME', `tyrum schedule ${sub} NAME`);
      return withHome(values.home, async (svc) => {
        const s = scheduler(svc);
        const r = sub === 'pause' ? await s.pause(name, who()) : await s.resume(name, who());
        const state = sub === 'pause' ? 'paused' : 'active';
        io.out(r.changed ? `${sub === 'pause' ? 'paused' : 'resumed'} ${name}${r.schedule.next_fire_at !== null ? `; next fire ${zonedIso(r.schedule.next_fire_at, r.schedule.timezone)}` : ''}` : `${name} is already ${state}`);
        return 0;
      });
    }
    case 'remove': {
      const name = need(positionals[0], 'NAME', 'tyrum schedule remove NAME');
      return withHome(values.home, async (svc) => {
        const r = await scheduler(svc).remove(name, who());
        io.out(`removed schedule ${r.name} (its runs and conversation stay as history)`);
        return 0;
      });
    }
    case 'next': {
      const name = need(positionals[0], 'NAME', 'tyrum schedule next NAME [--count N]');
      const count = intArg(values.count, 'count') ?? 5;
      if (count < 1 || count > 1000) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--count must be 1-1000');
      return withHome(values.home, async (svc) => {
        const s = scheduler(svc);
        const r = s.get(name);
        const times = s.next(name, count);
        if (values.json) io.out(JSON.stringify({ name: r.name, state: r.state, timezone: r.timezone, next: times.map((t) => when(t, r.timezone)) }));
        else {
          if (r.state === 'paused') io.err(`note: ${name} is paused; these are its fire times if resumed now`);
          for (const t of times) io.out(`${zonedIso(t, r.timezone)}\t${new Date(t).toISOString()}`);
        }
        return 0;
      });
    }
    default:
      throw subcommandError('schedule', sub);
  }
}
