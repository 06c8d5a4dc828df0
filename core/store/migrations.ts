/**
 * Numbered schema migrations. Append only: a released migration is never edited.
 * `PRAGMA user_version` records the last applied number.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tokens, devices, audit',
    sql: `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL DEFAULT '',
        scopes TEXT NOT NULL,
        roles TEXT NOT NULL,
        kdf TEXT NOT NULL,
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT,
        expires_at INTEGER,
        revoked_at INTEGER,
        last_used_at INTEGER
      ) STRICT;

      CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        pubkey TEXT NOT NULL,
        role TEXT NOT NULL,
        label TEXT,
        platform TEXT,
        version TEXT,
        first_seen_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE audit_entries (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT;
      CREATE INDEX audit_entries_type_seq ON audit_entries (type, seq);
    `,
  },
  {
    version: 2,
    name: 'plugins, grants, config, plugin kv, secrets',
    sql: `
      CREATE TABLE plugins (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        manifest TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        wasm_sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('disabled', 'enabled')),
        installed_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_grants (
        plugin_id TEXT PRIMARY KEY REFERENCES plugins (id) ON DELETE CASCADE,
        grant_json TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_config (
        plugin_id TEXT PRIMARY KEY REFERENCES plugins (id) ON DELETE CASCADE,
        config_json TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE plugin_kv (
        plugin_id TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (plugin_id, key)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL,
        destinations TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        rotated_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    name: 'policy snapshots, active policy, activations, overrides',
    sql: `
      -- Immutable: id = 'pol_' + sha256(bundle), bundle is the canonical JSON.
      CREATE TABLE policy_snapshots (
        id TEXT PRIMARY KEY CHECK (id GLOB 'pol_*'),
        bundle TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
      ) STRICT;

      -- Append-only history of which snapshot became active, when and by whom.
      CREATE TABLE policy_activations (
        seq INTEGER PRIMARY KEY,
        snapshot_id TEXT NOT NULL REFERENCES policy_snapshots (id),
        activated_at INTEGER NOT NULL,
        activated_by TEXT NOT NULL
      ) STRICT;

      -- The active policy: at most one row, pointing at its activation.
      CREATE TABLE policy_active (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        activation_seq INTEGER NOT NULL REFERENCES policy_activations (seq)
      ) STRICT;

      -- "Approve always": one exact tool id, optionally one exact args hash; never a pattern.
      CREATE TABLE policy_overrides (
        id TEXT PRIMARY KEY,
        tool_id TEXT NOT NULL CHECK (instr(tool_id, '*') = 0),
        args_hash TEXT,
        created_by TEXT NOT NULL,
        created_from_approval TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
      ) STRICT;
      CREATE INDEX policy_overrides_tool ON policy_overrides (tool_id);
    `,
  },
  {
    version: 4,
    name: 'durable execution: runs, steps, attempts, approvals, event outbox',
    sql: `
      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('tool', 'workflow')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
        created_by TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
        pause_reason TEXT CHECK (pause_reason IN ('approval', 'outcome_unknown')),
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        fencing_token INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      -- Idempotency: one run per (creator, key); concurrent submissions collapse onto it.
      CREATE UNIQUE INDEX runs_idempotency ON runs (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
      CREATE INDEX runs_claimable ON runs (state, next_attempt_at);

      CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL CHECK (idx >= 0),
        tool_id TEXT NOT NULL,
        args TEXT NOT NULL,
        args_hash TEXT NOT NULL,
        idempotency_key TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'waiting_approval', 'succeeded', 'failed', 'outcome_unknown', 'skipped', 'cancelled')),
        idempotent INTEGER NOT NULL DEFAULT 0 CHECK (idempotent IN (0, 1)),
        max_attempts INTEGER CHECK (max_attempts >= 1),
        timeout_ms INTEGER NOT NULL CHECK (timeout_ms >= 1),
        postcondition TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        policy_decision TEXT CHECK (policy_decision IN ('allow', 'require_approval', 'deny')),
        policy_enforced INTEGER,
        policy_snapshot_id TEXT,
        policy_detail TEXT,
        approval_id TEXT,
        definition_hash TEXT,
        plugin_digest TEXT,
        result TEXT,
        error TEXT,
        started_at INTEGER,
        finished_at INTEGER,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, idx)
      ) STRICT;

      CREATE TABLE attempts (
        run_id TEXT NOT NULL,
        step_idx INTEGER NOT NULL,
        n INTEGER NOT NULL CHECK (n >= 1),
        state TEXT NOT NULL CHECK (state IN ('started', 'succeeded', 'failed', 'interrupted')),
        owner TEXT NOT NULL,
        fencing_token INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        duration_ms REAL,
        usage TEXT,
        result TEXT,
        error TEXT,
        PRIMARY KEY (run_id, step_idx, n),
        FOREIGN KEY (run_id, step_idx) REFERENCES steps (run_id, idx) ON DELETE CASCADE
      ) STRICT;

      CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        run_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
        step_idx INTEGER,
        tool_id TEXT NOT NULL,
        args TEXT NOT NULL,
        args_hash TEXT NOT NULL,
        definition_hash TEXT NOT NULL,
        plugin_digest TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
        mode TEXT CHECK (mode IN ('once', 'always')),
        reason TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        resolved_at INTEGER,
        resolved_by TEXT,
        consumed_at INTEGER
      ) STRICT;
      CREATE INDEX approvals_state_expiry ON approvals (state, expires_at);
      CREATE INDEX approvals_run ON approvals (run_id, step_idx);

      -- Durable events: written in the same transaction as the change they describe.
      -- AUTOINCREMENT so a cursor never sees a seq reused.
      CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        occurred_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 5,
    name: 'MCP servers and their pinned tool definitions',
    sql: `
      -- One row per MCP server the gateway knows, declared by an operator or by an enabled
      -- plugin (origin 'plugin:<id>'). spec is canonical JSON; a changed spec is a new digest,
      -- which puts the server back in quarantine.
      CREATE TABLE mcp_servers (
        name TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        spec TEXT NOT NULL,
        spec_digest TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('quarantined', 'approved', 'disabled')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        approved_at INTEGER,
        approved_by TEXT,
        -- Last known health, written by whichever process talked to the server: JSON.
        health TEXT
      ) STRICT;

      -- What a server last listed (observed) next to what an operator approved. A tool is
      -- served only while both hashes agree and its schema was not refused.
      CREATE TABLE mcp_tools (
        server TEXT NOT NULL REFERENCES mcp_servers (name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        observed TEXT,
        observed_hash TEXT,
        observed_at INTEGER,
        refused TEXT,
        approved TEXT,
        approved_hash TEXT,
        effect TEXT NOT NULL DEFAULT 'state_changing' CHECK (effect IN ('read_only', 'state_changing')),
        approved_at INTEGER,
        approved_by TEXT,
        PRIMARY KEY (server, name)
      ) STRICT;
    `,
  },
  {
    version: 6,
    name: 'token lineage: the token that minted each token',
    sql: `
      -- A token minted over the protocol lives only while its parent does: revoking or expiry of
      -- the parent ends it. NULL for tokens made by the CLI or at bootstrap.
      ALTER TABLE tokens ADD COLUMN parent_id TEXT REFERENCES tokens (id);
      -- Tokens minted before this migration recorded their minter's id in created_by.
      UPDATE tokens SET parent_id = created_by WHERE created_by <> id AND created_by IN (SELECT id FROM tokens);
      CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
    `,
  },
  {
    version: 7,
    name: 'nodes: pairings, and node tokens bound to a device',
    sql: `
      -- 'access': an operator's or client's token. 'node_enrollment': lets a node connect far
      -- enough to ask to be paired, nothing more. 'node': minted when a pairing is approved,
      -- bound to that node's device id.
      ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'access' CHECK (kind IN ('access', 'node_enrollment', 'node'));
      ALTER TABLE tokens ADD COLUMN device_id TEXT;

      CREATE TABLE node_pairings (
        id TEXT PRIMARY KEY CHECK (id GLOB 'pair_*'),
        device_id TEXT NOT NULL,
        pubkey TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('awaiting_human', 'approved', 'denied', 'revoked')),
        trust_level TEXT CHECK (trust_level IN ('local', 'remote')),
        node_name TEXT,
        label TEXT,
        platform TEXT,
        version TEXT,
        mode TEXT,
        remote_address TEXT NOT NULL,
        -- JSON [{id, version, definition_hash}] as the node advertised them (its latest connection).
        advertised TEXT NOT NULL,
        -- JSON [{id, version, definition_hash, read_only}] granted by the operator.
        allowlist TEXT NOT NULL DEFAULT '[]',
        -- The node token, once minted; NULL until then.
        token_id TEXT REFERENCES tokens (id),
        credential_delivered_at INTEGER,
        requested_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        resolved_at INTEGER,
        resolved_by TEXT,
        reason TEXT
      ) STRICT;
      -- At most one live pairing per device; approved node names are unique.
      CREATE UNIQUE INDEX node_pairings_live ON node_pairings (device_id) WHERE state IN ('awaiting_human', 'approved');
      CREATE UNIQUE INDEX node_pairings_name ON node_pairings (node_name) WHERE state = 'approved';
      CREATE INDEX node_pairings_state ON node_pairings (state, requested_at);
    `,
  },
  {
    version: 8,
    name: 'attempt evidence',
    sql: `
      -- JSON, redacted: what the executor reported beside the output (a node's digests before and
      -- after a write, an exit code, durations). Written in the commit that ends the attempt.
      ALTER TABLE attempts ADD COLUMN evidence TEXT;
    `,
  },
  {
    version: 9,
    name: 'conversations, agent turns, the model backend, channel instances, senders, inbound dedupe and the delivery outbox',
    sql: `
      -- The model backend agent turns use (one row, name 'default'). The API key is a secret
      -- handle's name, never a value.
      CREATE TABLE agent_backends (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('openai-compatible')),
        base_url TEXT NOT NULL,
        model TEXT NOT NULL,
        api_key_secret TEXT,
        system_prompt TEXT,
        -- JSON array of tool-id globs offered to the model (policy still decides each call).
        tools TEXT NOT NULL,
        max_steps INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      -- A configured bot of a channel plugin; its webhook is /channels/<plugin>/<name>/webhook.
      CREATE TABLE channel_instances (
        id TEXT PRIMARY KEY CHECK (id GLOB 'chan_*'),
        plugin_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        name TEXT NOT NULL,
        api_base TEXT NOT NULL,
        credential_secret TEXT,
        verify_secret TEXT NOT NULL,
        dm_policy TEXT NOT NULL CHECK (dm_policy IN ('pairing', 'allowlist', 'open')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (plugin_id, name)
      ) STRICT;

      -- Who may talk to the agent through an instance: allowed senders, and unknown ones waiting
      -- with a pairing code for the operator.
      CREATE TABLE channel_senders (
        instance_id TEXT NOT NULL REFERENCES channel_instances (id) ON DELETE CASCADE,
        sender_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('allowed', 'pending', 'denied')),
        name TEXT,
        code TEXT,
        chat_id TEXT,
        code_expires_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (instance_id, sender_id)
      ) STRICT;
      CREATE UNIQUE INDEX channel_senders_code ON channel_senders (instance_id, code) WHERE code IS NOT NULL;

      -- Inbound dedupe: the same (instance, external id) is taken once, however often delivered.
      CREATE TABLE channel_inbound (
        instance_id TEXT NOT NULL REFERENCES channel_instances (id) ON DELETE CASCADE,
        external_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        -- What became of it: 'message' (a message id), 'pairing', 'ignored'.
        outcome TEXT NOT NULL,
        PRIMARY KEY (instance_id, external_id)
      ) STRICT;

      -- A conversation is keyed by (channel, account, thread): an instance's chat and thread, or
      -- ('operator', the creating token, a generated id) for one an operator client created.
      CREATE TABLE conversations (
        id TEXT PRIMARY KEY CHECK (id GLOB 'conv_*'),
        channel TEXT NOT NULL,
        account TEXT NOT NULL,
        thread TEXT NOT NULL,
        title TEXT,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (channel, account, thread)
      ) STRICT;
      CREATE INDEX conversations_updated ON conversations (updated_at);

      CREATE TABLE messages (
        id TEXT PRIMARY KEY CHECK (id GLOB 'msg_*'),
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        seq INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'notice')),
        content TEXT,
        -- assistant: JSON [{id, tool_id, arguments}]; tool: the call it answers and its run.
        tool_calls TEXT,
        tool_call_id TEXT,
        run_id TEXT,
        -- user: the turn that took it (NULL while it waits); assistant/tool/notice: the turn that wrote it.
        turn_id TEXT,
        -- JSON {source: operator|channel, ...}: where the text came from and whether it was verified.
        provenance TEXT NOT NULL,
        usage TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (conversation_id, seq)
      ) STRICT;
      CREATE INDEX messages_waiting ON messages (conversation_id) WHERE role = 'user' AND turn_id IS NULL;
      CREATE INDEX messages_turn ON messages (turn_id);

      -- One turn at a time per conversation (a unique partial index); a queued turn takes every
      -- user message that arrived before it started.
      CREATE TABLE turns (
        id TEXT PRIMARY KEY CHECK (id GLOB 'turn_*'),
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
        waiting TEXT,
        steps INTEGER NOT NULL DEFAULT 0,
        usage TEXT NOT NULL,
        error TEXT,
        owner TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER
      ) STRICT;
      CREATE UNIQUE INDEX turns_one_running ON turns (conversation_id) WHERE state = 'running';
      CREATE UNIQUE INDEX turns_one_queued ON turns (conversation_id) WHERE state = 'queued';
      CREATE INDEX turns_active ON turns (state, created_at) WHERE state IN ('queued', 'running');

      -- Replies to channel chats, sent by the host with retries; parts_sent survives a crash so
      -- a retry never sends a delivered part again.
      CREATE TABLE deliveries (
        id TEXT PRIMARY KEY CHECK (id GLOB 'dlv_*'),
        instance_id TEXT NOT NULL REFERENCES channel_instances (id) ON DELETE CASCADE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        message_id TEXT NOT NULL UNIQUE,
        chat_id TEXT NOT NULL,
        thread_id TEXT,
        text TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        parts_sent INTEGER NOT NULL DEFAULT 0,
        receipts TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER
      ) STRICT;
      CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
    `,
  },
  {
    version: 10,
    name: 'scheduler',
    sql: `
      -- A schedule: when it fires (a cron expression in a time zone, or a fixed interval from an
      -- anchor) and what each fire starts (target: JSON {type: tool, tool_id, args} or
      -- {type: agent_turn, prompt}). next_fire_at is the claim token: a fire advances it with a
      -- conditional UPDATE (WHERE next_fire_at = the value read), so one claimer wins each tick.
      CREATE TABLE schedules (
        id TEXT PRIMARY KEY CHECK (id GLOB 'sch_*'),
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'heartbeat')),
        cron TEXT,
        timezone TEXT NOT NULL,
        every_ms INTEGER CHECK (every_ms IS NULL OR every_ms >= 1000),
        anchor_at INTEGER NOT NULL,
        target TEXT NOT NULL,
        missed_policy TEXT NOT NULL CHECK (missed_policy IN ('skip', 'catch_up_once')),
        state TEXT NOT NULL CHECK (state IN ('active', 'paused')),
        -- NULL while paused.
        next_fire_at INTEGER,
        last_fire_at INTEGER,
        fires INTEGER NOT NULL DEFAULT 0,
        -- Ticks that passed without a fire (downtime under the skip policy, or folded into a catch-up fire).
        missed INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((kind = 'cron') = (cron IS NOT NULL)),
        CHECK ((kind = 'cron') = (every_ms IS NULL))
      ) STRICT;
      CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE state = 'active';

      -- One row per fire, written in the transaction that claims the tick and starts the run or
      -- message: (schedule_id, fire_at) is unique, so a tick can never fire twice.
      CREATE TABLE schedule_fires (
        schedule_id TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
        fire_at INTEGER NOT NULL,
        ticks INTEGER NOT NULL DEFAULT 1,
        fired_at INTEGER NOT NULL,
        owner TEXT NOT NULL,
        run_id TEXT,
        conversation_id TEXT,
        message_id TEXT,
        error TEXT,
        PRIMARY KEY (schedule_id, fire_at)
      ) STRICT;
    `,
  },
  {
    version: 11,
    name: 'artifacts',
    sql: `
      -- Content-addressed evidence blobs: the bytes live in the artifact store (a directory under
      -- the home), one row per distinct content. id is 'sha256:' + the lowercase hex digest of the
      -- bytes; media_type and name are those of the first put of that content.
      CREATE TABLE artifacts (
        id TEXT PRIMARY KEY CHECK (id GLOB 'sha256:*' AND length(id) = 71),
        size INTEGER NOT NULL CHECK (size >= 0),
        media_type TEXT NOT NULL,
        name TEXT,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
      ) STRICT;
      CREATE INDEX artifacts_created ON artifacts (created_at, id);

      -- Where an artifact is evidence: a run (and the step and attempt that produced it, when a
      -- tool or node did). Deleting a run deletes its attachments; the artifact then is unattached
      -- and the retention sweeper may remove it.
      CREATE TABLE artifact_attachments (
        id INTEGER PRIMARY KEY,
        artifact_id TEXT NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx INTEGER CHECK (step_idx IS NULL OR step_idx >= 0),
        attempt INTEGER CHECK (attempt IS NULL OR attempt >= 1),
        kind TEXT NOT NULL CHECK (kind IN ('evidence')),
        name TEXT,
        media_type TEXT NOT NULL,
        attached_at INTEGER NOT NULL,
        attached_by TEXT NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX artifact_attachments_once ON artifact_attachments (run_id, IFNULL(step_idx, -1), IFNULL(attempt, -1), artifact_id);
      CREATE INDEX artifact_attachments_artifact ON artifact_attachments (artifact_id);
    `,
  },
  {
    version: 12,
    name: 'playbooks',
    sql: `
      -- A workflow: one run of a compiled playbook (core/playbooks). plan is the compiled plan
      -- (JSON, with its inputs); step_idx the step being worked on; steps the per-step record
      -- (JSON array: state, run/turn ids, gate decision); outputs the step outputs by step id.
      -- A paused workflow waits at step_idx's approval gate: gate_nonce names the resume token
      -- issued for it (the token itself is an HMAC the gateway can re-derive; it is not stored).
      CREATE TABLE workflows (
        id TEXT PRIMARY KEY CHECK (id GLOB 'wf_*'),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        plan TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'succeeded', 'failed', 'cancelled')),
        step_idx INTEGER NOT NULL DEFAULT 0,
        steps TEXT NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}',
        gate_nonce TEXT,
        gate_message TEXT,
        gate_expires_at INTEGER,
        error TEXT,
        created_by TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER,
        CHECK ((state = 'paused') = (gate_nonce IS NOT NULL))
      ) STRICT;
      CREATE INDEX workflows_active ON workflows (state) WHERE state IN ('running', 'paused');
      CREATE INDEX workflows_created ON workflows (created_at);
      CREATE UNIQUE INDEX workflows_idempotency ON workflows (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;

      -- Every gate decided: a resume token is single use because its (workflow, step) row exists.
      CREATE TABLE workflow_gates (
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        step_idx INTEGER NOT NULL,
        nonce TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('approved', 'denied', 'expired')),
        decided_by TEXT,
        reason TEXT,
        decided_at INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, step_idx)
      ) STRICT;
    `,
  },
  {
    version: 13,
    name: 'retention: turns and deliveries by conversation',
    sql: `
      -- Removing an inactive conversation (core/retention) takes its turns and deliveries; without
      -- these each removal would scan both tables.
      CREATE INDEX turns_conversation ON turns (conversation_id);
      CREATE INDEX deliveries_conversation ON deliveries (conversation_id);
    `,
  },
  {
    version: 14,
    name: 'single_use_tokens',
    sql: `
      -- A single-use node bootstrap token (node.bootstrap, the operator UI's "use this browser as a
      -- node"): kind node_enrollment, bound to the first device that connects with it (device_id is
      -- set then) and revoked once that device has stored its node token.
      ALTER TABLE tokens ADD COLUMN single_use INTEGER NOT NULL DEFAULT 0 CHECK (single_use IN (0, 1));
    `,
  },
  {
    version: 15,
    name: 'schedule fires start workflows',
    sql: `
      -- A schedule whose target is a playbook records the workflow each fire started.
      ALTER TABLE schedule_fires ADD COLUMN workflow_id TEXT;
    `,
  },
  {
    version: 16,
    name: 'plugin upgrade permission diffs',
    sql: `
      -- What an upgrade asked for beyond the version the operator last granted (core/registry
      -- permissionDiff), kept until the operator grants again: the Plugins page and plugin.list
      -- show it, and it blocks enabling. from_version is the version before the first such upgrade.
      CREATE TABLE plugin_pending_diffs (
        plugin_id TEXT PRIMARY KEY REFERENCES plugins (id) ON DELETE CASCADE,
        from_version TEXT NOT NULL,
        to_version TEXT NOT NULL,
        diff_json TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 17,
    name: 'what a plugin grant covered',
    sql: `
      -- The version and requests (JSON {version, requests, risk}) of the manifest the operator
      -- granted: an upgrade's or downgrade's pending permission diff is computed against it, so a
      -- version back within the grant clears the diff. NULL for grants made before this migration.
      ALTER TABLE plugin_grants ADD COLUMN granted_for TEXT;
    `,
  },
  {
    version: 18,
    name: 'commit counters of other writers',
    sql: `
      -- Nothing on SQLite: PRAGMA data_version tells a connection that another one committed.
      -- PostgreSQL has no such counter; its migration 18 adds tyrum_writers (core/store/pg/migrations.ts).
      SELECT 1;
    `,
  },
  {
    version: 19,
    name: 'tenants',
    sql: `
      -- A tenant owns tokens and what they create: runs (their steps, attempts and approvals follow
      -- the run), outbox events, conversations (their messages and turns follow), audit entries.
      -- 'default' is the host's own tenant: every row written before tenancy belongs to it, and a
      -- gateway whose operators never name a tenant never sees another (docs/tenancy.md).
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
        label TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL
      ) STRICT;
      INSERT INTO tenants (id, label, created_at) VALUES ('default', 'the host tenant', 0);

      -- Tokens and runs keep their row shape (a row reads back exactly as written): the tenant of
      -- one outside the default tenant is an ownership row beside it; no row means 'default'.
      CREATE TABLE tenant_tokens (
        token_id TEXT PRIMARY KEY REFERENCES tokens (id) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default')
      ) STRICT;
      CREATE INDEX tenant_tokens_tenant ON tenant_tokens (tenant_id);
      CREATE TABLE tenant_runs (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default')
      ) STRICT;
      CREATE INDEX tenant_runs_tenant ON tenant_runs (tenant_id);

      -- Copied from the run (or the conversation) when the row is written.
      ALTER TABLE approvals ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
      ALTER TABLE outbox ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
      ALTER TABLE conversations ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
      CREATE INDEX approvals_tenant ON approvals (tenant_id, created_at);
      CREATE INDEX outbox_tenant ON outbox (tenant_id, seq);
      CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);

      -- An audit entry of a tenant other than the default names it in its actor ("tenant", hashed
      -- with the entry: the one chain protects each tenant's view of it); this is its index.
      CREATE TABLE tenant_audit_entries (
        seq INTEGER PRIMARY KEY REFERENCES audit_entries (seq) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default')
      ) STRICT;
      CREATE INDEX tenant_audit_entries_tenant ON tenant_audit_entries (tenant_id, seq);
    `,
  },
  {
    version: 20,
    name: 'turn and delivery leases',
    sql: `
      -- Several gateways on one database (core/conversations/turns.ts, core/channels/delivery.ts).
      -- A running turn is held under a lease: owner (the existing column), expiry and a fencing
      -- token bumped by every claim or take-over; every later write of the turn matches owner and
      -- token, so a runner that lost its lease cannot overwrite the new owner's work. NULL expiry
      -- (turns from before this migration): the lease is expired.
      ALTER TABLE turns ADD COLUMN lease_expires_at INTEGER;
      ALTER TABLE turns ADD COLUMN fencing_token INTEGER NOT NULL DEFAULT 0;
      -- A pending delivery being sent is claimed: owner, expiry (a stale claim is taken over once it
      -- expired) and a token bumped by every claim; results are written only under the claim.
      ALTER TABLE deliveries ADD COLUMN claim_owner TEXT;
      ALTER TABLE deliveries ADD COLUMN claim_expires_at INTEGER;
      ALTER TABLE deliveries ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 21,
    name: 'node_routing',
    sql: `
      -- Several gateways on one database (PostgreSQL): each live gateway process has a row, its
      -- heartbeat moved every few seconds; the node connections it holds; and the node tasks one
      -- replica hands to the replica holding the node's socket. SQLite (one gateway) never writes
      -- them; the tables exist so both stores have the same schema.
      CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE node_connections (
        connection_id TEXT PRIMARY KEY,
        replica_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        pairing_id TEXT NOT NULL,
        connected_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX node_connections_pairing ON node_connections (pairing_id);
      CREATE INDEX node_connections_replica ON node_connections (replica_id);
      CREATE TABLE node_dispatches (
        id TEXT PRIMARY KEY,
        pairing_id TEXT NOT NULL,
        origin_replica TEXT NOT NULL,
        target_replica TEXT NOT NULL,
        request TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done')),
        result TEXT,
        created_at INTEGER NOT NULL,
        deadline_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX node_dispatches_target ON node_dispatches (target_replica, state);
      CREATE INDEX node_dispatches_origin ON node_dispatches (origin_replica, state);
    `,
  },
  {
    version: 22,
    name: 'tenant plugin grants, kv and secrets',
    sql: `
      -- A tenant other than the default has its own grant of a plugin the host installed, its own
      -- key-value namespace per plugin and its own secret handles (docs/tenancy.md). The default
      -- tenant's stay where they were (plugin_grants, plugin_kv, secrets): these tables hold only
      -- other tenants' rows. Removing a plugin removes every tenant's grant and key-value data.
      CREATE TABLE tenant_plugin_grants (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default'),
        plugin_id TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
        grant_json TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        granted_for TEXT,
        PRIMARY KEY (tenant_id, plugin_id)
      ) STRICT;
      CREATE INDEX tenant_plugin_grants_plugin ON tenant_plugin_grants (plugin_id);
      CREATE TABLE tenant_plugin_kv (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default'),
        plugin_id TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (tenant_id, plugin_id, key)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX tenant_plugin_kv_plugin ON tenant_plugin_kv (plugin_id);
      CREATE TABLE tenant_secrets (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default'),
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL,
        destinations TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        rotated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, name)
      ) STRICT;
    `,
  },
  {
    version: 23,
    name: 'tenant policy',
    sql: `
      -- A tenant's own policy bundle (docs/tenancy.md, "Policy"): it can only tighten the host's.
      -- Content-addressed snapshots per tenant (the same content in two tenants is two rows, so
      -- neither can learn the other's), and each tenant's activation history; the tenant's
      -- active bundle is its newest activation. The host's bundle stays in policy_snapshots.
      CREATE TABLE tenant_policy_snapshots (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default'),
        id TEXT NOT NULL CHECK (id GLOB 'pol_*'),
        bundle TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
      ) STRICT;
      CREATE TABLE tenant_policy_activations (
        seq INTEGER PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        snapshot_id TEXT NOT NULL,
        activated_at INTEGER NOT NULL,
        activated_by TEXT NOT NULL,
        FOREIGN KEY (tenant_id, snapshot_id) REFERENCES tenant_policy_snapshots (tenant_id, id)
      ) STRICT;
      CREATE INDEX tenant_policy_activations_tenant ON tenant_policy_activations (tenant_id, seq);

      -- Overrides keep their row shape: one an "always" approval of another tenant wrote has an
      -- ownership row beside it and applies to that tenant's calls only; no row: the host's, which
      -- applies to every tenant's calls.
      CREATE TABLE tenant_policy_overrides (
        override_id TEXT PRIMARY KEY REFERENCES policy_overrides (id) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> 'default')
      ) STRICT;
      CREATE INDEX tenant_policy_overrides_tenant ON tenant_policy_overrides (tenant_id);
    `,
  },
];
