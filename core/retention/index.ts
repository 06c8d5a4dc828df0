/**
 * Retention (docs/retention.md): what the gateway removes, when, in bounded batches. The audit log
 * is never removed; `tyrum audit archive` writes it to a file that verifies offline.
 */
import type { Store } from '../store/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Retention } from '../config/index.js';
import { Sweeper, type SweeperOptions } from './sweeper.js';
import { artifactsTarget, conversationsTarget, eventsTarget, runsTarget, scheduleFiresTarget, workflowsTarget } from './targets.js';

export { Sweeper, type SweeperOptions, type SweepReport, type CategoryReport } from './sweeper.js';
export { runsTarget, eventsTarget, scheduleFiresTarget, conversationsTarget, workflowsTarget, artifactsTarget } from './targets.js';
export type { RetentionTarget, SweepRequest, SweepBatch, Cursor } from './types.js';

export interface CreateSweeperOptions {
  store: Store;
  audit: AuditLog;
  retention: Retention;
  now?: () => number;
  log?: SweeperOptions['log'];
  /** Deletes an artifact's blob once its row is gone (ArtifactService.deleteBlob); without it artifacts are not swept. */
  deleteArtifactBlob?: (id: string) => Promise<void>;
}

/**
 * The sweeper with every category registered, as the gateway and `tyrum gc` both use it. A new
 * category is one `register` line here: `s.register(target, retention.<category>_days)`.
 */
export function createSweeper(o: CreateSweeperOptions): Sweeper {
  const s = new Sweeper({ store: o.store, audit: o.audit, retention: o.retention, ...(o.now ? { now: o.now } : {}), ...(o.log ? { log: o.log } : {}) });
  s.register(runsTarget(o.store), o.retention.runsDays);
  s.register(scheduleFiresTarget(o.store), o.retention.runsDays);
  s.register(eventsTarget(o.store), o.retention.eventsDays);
  s.register(conversationsTarget(o.store), o.retention.conversationsDays);
  s.register(workflowsTarget(o.store), o.retention.runsDays);
  if (o.deleteArtifactBlob) s.register(artifactsTarget(o.store, o.deleteArtifactBlob, o.now), o.retention.artifactsDays);
  return s;
}
