/**
 * What a schedule's fire starts. A discriminated union on `type`, stored as JSON in the schedule
 * row and dispatched through one table of starters (service.ts): adding a target (a `playbook`
 * once core/playbooks exists: `{ type: 'playbook'; file: string; inputs: Record<string, unknown> }`)
 * is a new member here, a new starter and a new value in the `schedule.fired` event's `target`
 * enum — additive changes; nothing stored needs migrating.
 */
export type ScheduleTarget =
  /** An engine run of one tool call: policy, approvals, sandbox and audit like any call. */
  | { type: 'tool'; tool_id: string; args: Record<string, unknown> }
  /** A message into the schedule's own operator conversation, which queues an agent turn. */
  | { type: 'agent_turn'; prompt: string }
  /** A workflow of a playbook (core/playbooks): the document as it was when the schedule was added, and its inputs. */
  | { type: 'playbook'; playbook: Record<string, unknown>; inputs: Record<string, unknown> };

export type ScheduleTargetType = ScheduleTarget['type'];

/** The prompt of a heartbeat that names none. */
export const HEARTBEAT_PROMPT_DEFAULT = 'heartbeat: check in';

/** A tick older than this when the scheduler reaches it is missed (default; SchedulerOptions.missedAfterMs). */
export const MISSED_AFTER_MS_DEFAULT = 60_000;
/** How often the scheduler looks for due schedules at most (default; SchedulerOptions.pollMs). */
export const SCHEDULER_POLL_MS_DEFAULT = 1000;
/** Due schedules claimed per pass (one transaction each). */
export const SCHEDULER_BATCH = 100;
/** The longest prompt a schedule may carry. */
export const MAX_PROMPT_CHARS = 16_000;
/** The largest arguments a tool schedule may carry (JSON bytes). */
export const MAX_ARGS_BYTES = 64 * 1024;
/** The largest playbook a schedule may carry (JSON bytes, with its inputs). */
export const MAX_PLAYBOOK_BYTES = 256 * 1024;
