// `npm test` on PostgreSQL too: key gateway test files run again with TYRUM_TEST_STORE=postgres
// (their gateways, CLI homes and execution stacks on databases of a throwaway cluster per file),
// each as a child process whose TAP output is a subtest here, so its assertions count in the
// summary. The same files run on SQLite in the main pass. Skipped, with the reason, where
// PostgreSQL is not installed. The failure matrix (test/core/gateway/pg-faults.test.ts) and the
// store tests (test/core/store) run on PostgreSQL by themselves.
import t from 'tap';
import { skipWithoutPostgres } from '../helpers/postgres.js';

const FILES = [
  'test/core/gateway/runs.test.ts',
  'test/core/channels/webhook-channel.test.ts',
];

const skip = skipWithoutPostgres();
// Gateway files one after another, each starting its own cluster: more than tap's default two
// minutes on a loaded 2-core machine. (approvals, playbooks/workflow and the rest pass on
// PostgreSQL too, docs/dev/postgres-port.md, but take minutes: run them with the variable.)
t.setTimeout(600_000);

for (const file of FILES) {
  if (skip) {
    t.test(`${file} on PostgreSQL`, { skip }, async () => undefined);
    continue;
  }
  t.spawn(process.execPath, ['--import', 'tsx', file], { env: { ...process.env, TYRUM_TEST_STORE: 'postgres' } }, `${file} on PostgreSQL`);
}
