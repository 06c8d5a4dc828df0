/**
 * `tyrum channel add|list|remove|senders`: chat-channel instances (bots) and who may talk to the
 * agent through them, on the gateway home directly (a running gateway picks changes up at its
 * next request or webhook). The webhook itself is served by the running gateway.
 */
import { TyrumError } from '../errors/index.js';
import { parse, need, subcommandError } from './args.js';
import { cliActor as who, withHome } from './home.js';
import { ChannelService, channelLabel } from '../channels/service.js';
import { ConversationService } from '../conversations/service.js';
import type { HomeServices } from '../runtime.js';
import type { DmPolicy, SenderRow } from '../store/index.js';
import { DEFAULT_PORT } from '../config/home.js';
import type { Io } from './io.js';

const USAGE = `usage:
  tyrum channel add PLUGIN[.CHANNEL] NAME --verify-secret HANDLE [--credential-secret HANDLE] [--api-base URL]
                    [--dm pairing|allowlist|open] [--allow SENDER,...] [--json]
        a bot of an installed channel plugin; its webhook is POST /channels/PLUGIN/NAME/webhook
        --verify-secret   the handle holding the webhook secret (Telegram secret_token, Slack signing
                          secret, or the shared HMAC key); create it with: tyrum secret set H --local-only
        --credential-secret  the handle holding the bot token the host injects into outbound requests;
                          bind it to the API origin: tyrum secret set H --destinations https://api.telegram.org
        --api-base        the platform API base (default: the plugin's; e.g. a local test server)
        --dm              unknown senders in direct messages: get a pairing code (default), are ignored
                          (allowlist), or may talk at once (open); in groups only allowed senders are heard
  tyrum channel list [--json]
  tyrum channel remove PLUGIN/NAME
  tyrum channel senders PLUGIN/NAME [--json]                 allowed, waiting (with their pairing codes) and denied senders
  tyrum channel senders PLUGIN/NAME --approve CODE|SENDER    allow a sender (by the pairing code they were sent, or id)
  tyrum channel senders PLUGIN/NAME --deny CODE|SENDER | --remove SENDER`;

/** The channel service over a home (administration only: adapters run in the gateway). */
function service(svc: HomeServices): ChannelService {
  const events = svc.approvals.events;
  const conversations = new ConversationService({ store: svc.store, events });
  const notHere = async (): Promise<never> => {
    throw new TyrumError('TYRUM_ERR_INVALID_STATE', 'channel adapters run in the gateway (tyrum start)');
  };
  return new ChannelService({
    store: svc.store,
    events,
    audit: svc.audit,
    conversations,
    contribution: (pluginId, channelId) => {
      const list = svc.plugins.get(pluginId)?.manifest.contributes.channels ?? [];
      return (channelId === null ? (list.length === 1 ? list[0] : undefined) : list.find((c) => c.id === channelId)) ?? null;
    },
    enabled: () => false,
    callExport: notHere,
    reveal: (n) => svc.secrets.reveal(n),
    secretExists: (n) => svc.secrets.has(n),
    queueDelivery: () => undefined,
  });
}

function senderLine(s: SenderRow, now: number): string {
  const code = s.state === 'pending' ? ((s.code_expires_at ?? 0) > now ? `code ${s.code}` : 'code expired') : '';
  return [s.sender_id, s.state, s.name ?? '', code].filter((x) => x !== '').join('\t');
}

export async function channelCmd(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(
    rest,
    {
      home: { type: 'string' },
      json: { type: 'boolean' },
      'verify-secret': { type: 'string' },
      'credential-secret': { type: 'string' },
      'api-base': { type: 'string' },
      dm: { type: 'string' },
      allow: { type: 'string' },
      approve: { type: 'string' },
      deny: { type: 'string' },
      remove: { type: 'string' },
    },
    2,
  );
  if (values.help || sub === '--help') return (io.out(USAGE), 0);
  switch (sub) {
    case 'add': {
      const form = 'tyrum channel add PLUGIN[.CHANNEL] NAME --verify-secret HANDLE [--credential-secret HANDLE]';
      const target = need(positionals[0], 'PLUGIN', form);
      const name = need(positionals[1], 'NAME', form);
      const verify = need(values['verify-secret'], '--verify-secret HANDLE', form);
      const dm = values.dm ?? 'pairing';
      if (!['pairing', 'allowlist', 'open'].includes(dm)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--dm must be pairing, allowlist or open');
      const [plugin, channel] = target.split('.');
      return withHome(values.home, async (svc) => {
        const row = service(svc).add({
          plugin: plugin!,
          ...(channel !== undefined ? { channel } : {}),
          name,
          verifySecret: verify,
          credentialSecret: values['credential-secret'] ?? null,
          ...(values['api-base'] !== undefined ? { apiBase: values['api-base'] } : {}),
          dmPolicy: dm as DmPolicy,
          allow: values.allow ? values.allow.split(',').map((s) => s.trim()).filter((s) => s !== '') : [],
        });
        await svc.audit.append('channel.added', who(), { channel: channelLabel(row), plugin_id: row.plugin_id, api_base: row.api_base, dm_policy: row.dm_policy, verify_secret: row.verify_secret, credential_secret: row.credential_secret });
        const path = `/channels/${row.plugin_id}/${row.name}/webhook`;
        if (values.json) io.out(JSON.stringify({ channel: channelLabel(row), webhook_path: path, api_base: row.api_base, dm_policy: row.dm_policy }));
        else {
          io.out(`added channel ${channelLabel(row)}`);
          io.out(`webhook: POST ${path} on the gateway's address (http://${svc.config.host}:${svc.config.port === 0 ? DEFAULT_PORT : svc.config.port} unless started with --port); expose it through your HTTPS reverse proxy or tunnel (docs/channels.md)`);
          if (svc.plugins.get(row.plugin_id)?.plugin.state !== 'enabled') io.out(`note: plugin ${row.plugin_id} is not enabled yet: tyrum plugin enable ${row.plugin_id}`);
        }
        return 0;
      });
    }
    case 'list':
      return withHome(values.home, async (svc) => {
        const rows = service(svc).list();
        if (values.json) {
          io.out(JSON.stringify({ channels: rows.map((r) => ({ channel: channelLabel(r), plugin_id: r.plugin_id, channel_id: r.channel, api_base: r.api_base, dm_policy: r.dm_policy, verify_secret: r.verify_secret, credential_secret: r.credential_secret, webhook_path: `/channels/${r.plugin_id}/${r.name}/webhook`, created_at: new Date(r.created_at).toISOString() })) }));
        } else if (rows.length === 0) io.out('no channels (tyrum channel add ...)');
        else for (const r of rows) io.out([channelLabel(r), r.api_base, `dm:${r.dm_policy}`, `/channels/${r.plugin_id}/${r.name}/webhook`].join('\t'));
        return 0;
      });
    case 'remove': {
      const label = need(positionals[0], 'PLUGIN/NAME', 'tyrum channel remove PLUGIN/NAME');
      return withHome(values.home, async (svc) => {
        const row = service(svc).remove(label);
        await svc.audit.append('channel.removed', who(), { channel: channelLabel(row) });
        io.out(`removed channel ${channelLabel(row)} (its conversations stay as history)`);
        return 0;
      });
    }
    case 'senders': {
      const label = need(positionals[0], 'PLUGIN/NAME', 'tyrum channel senders PLUGIN/NAME [--approve CODE|SENDER | --deny CODE|SENDER | --remove SENDER]');
      const actions = [values.approve !== undefined, values.deny !== undefined, values.remove !== undefined].filter(Boolean).length;
      if (actions > 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give one of --approve, --deny, --remove');
      return withHome(values.home, async (svc) => {
        const ch = service(svc);
        if (actions === 1) {
          const action = values.approve !== undefined ? 'allow' : values.deny !== undefined ? 'deny' : 'remove';
          const target = (values.approve ?? values.deny ?? values.remove)!;
          const row = await ch.decideSender(label, target, action, who());
          io.out(row === null ? `removed sender ${target} from ${label}` : `${row.sender_id}${row.name ? ` (${row.name})` : ''} is now ${row.state} on ${label}`);
          return 0;
        }
        const now = Date.now();
        const rows = ch.senders(label);
        if (values.json) io.out(JSON.stringify({ senders: rows.map((s) => ({ sender_id: s.sender_id, state: s.state, name: s.name, code: s.state === 'pending' && (s.code_expires_at ?? 0) > now ? s.code : null, code_expires_at: s.code_expires_at === null ? null : new Date(s.code_expires_at).toISOString() })) }));
        else if (rows.length === 0) io.out(`no senders on ${label} yet`);
        else for (const s of rows) io.out(senderLine(s, now));
        return 0;
      });
    }
    default:
      throw subcommandError('channel', sub);
  }
}
