/**
 * The author's commands under `tyrum plugin`: test (the local harness), pack, keygen and sign.
 * Each takes the arguments after its sub-command. Results on stdout, diagnostics on stderr;
 * exit 0 on success, 1 on failure (a failing test case included), 2 on usage errors.
 */
import { TyrumError } from '../../../core/errors/index.js';
import { formatReport, runPluginTests } from '../harness.js';
import { createKeyFile, packToFile, signArchiveFile } from '../pack.js';
import { parse } from '../../../core/cli/args.js';
import type { Io } from '../../../core/cli/io.js';

export const TEST_USAGE = `usage: tyrum plugin test [DIR] [--json]
  Runs DIR/tests/*.test.json (DIR defaults to .) against the built plugin in the gateway's sandbox,
  under the budgets the gateway enforces once everything the manifest requests is granted.
  Each case: { "name"?, "tool", "input", "expect"? | "expect_error"?, "config"?, "kv"?, "http"?, "secrets"? };
  for channel adapters also { "name"?, "inbound": { "body", "headers"?, ... }, "verify"?, "expect"? } and
  { "name"?, "outbound": { "text", "chat_id", ... }, "expect"? } (docs/plugin-authors.md, "Channel adapters").
  Prints ✓/✗ per case with its budget use against the limits, then "N passed, M failed"; exit 1 on any failure.`;

export const PACK_USAGE = `usage: tyrum plugin pack [DIR] [--out FILE] [--json]
  Checks the plugin in DIR (default .) as the gateway would and writes one deterministic archive
  (manifest + module) to FILE (default ./<id>-<version>.tgz); prints its path and sha256.`;

export const KEYGEN_USAGE = `usage: tyrum plugin keygen --out KEYFILE [--json]
  Creates an Ed25519 publisher key (PKCS#8 PEM, mode 0600; never overwrites) and prints its public
  key (SPKI, base64url): put it in a gateway's config.json as
  "trusted_publishers": [{ "name": "<your manifest's publisher>", "public_key": "<printed key>" }].`;

export const SIGN_USAGE = `usage: tyrum plugin sign ARCHIVE --key KEYFILE [--json]
  Signs a packed plugin as the publisher its manifest names, writing ARCHIVE.sig beside it
  (install looks for it there): { version, publisher, sha256, public_key, signature }.`;

function usage(io: Io, text: string, isError: boolean): number {
  (isError ? io.err : io.out)(text);
  return isError ? 2 : 0;
}

/** `tyrum plugin test [DIR] [--json]` */
export async function pluginTest(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, 1);
  if (values.help) return usage(io, TEST_USAGE, false);
  const report = await runPluginTests(positionals[0] ?? '.');
  if (values.json) io.out(JSON.stringify(report));
  else for (const line of formatReport(report)) io.out(line);
  return report.failed > 0 ? 1 : 0;
}

/** `tyrum plugin pack [DIR] [--out FILE] [--json]` */
export async function pluginPack(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, json: { type: 'boolean' } }, 1);
  if (values.help) return usage(io, PACK_USAGE, false);
  const r = await packToFile(positionals[0] ?? '.', values.out !== undefined ? { out: values.out } : {});
  if (values.json) io.out(JSON.stringify(r));
  else {
    io.out(`packed ${r.id} ${r.version} (publisher ${r.publisher}): ${r.path} (${r.bytes} bytes)`);
    io.out(`sha256 ${r.sha256}`);
    io.out(`next: tyrum plugin sign ${r.path} --key KEYFILE`);
  }
  return 0;
}

/** `tyrum plugin keygen --out KEYFILE [--json]` */
export async function pluginKeygen(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) return usage(io, KEYGEN_USAGE, false);
  if (values.out === undefined) return usage(io, KEYGEN_USAGE, true);
  const k = await createKeyFile(values.out);
  if (values.json) io.out(JSON.stringify({ key_file: k.path, public_key: k.publicKey }));
  else {
    io.out(k.publicKey);
    io.err(`wrote the private key to ${k.path} (mode 0600; keep it secret). Trust it on a gateway with config.json:`);
    io.err(`  "trusted_publishers": [{ "name": "<your manifest's publisher>", "public_key": "${k.publicKey}" }]`);
  }
  return 0;
}

/** `tyrum plugin sign ARCHIVE --key KEYFILE [--json]` */
export async function pluginSign(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { key: { type: 'string' }, json: { type: 'boolean' } }, 1);
  if (values.help) return usage(io, SIGN_USAGE, false);
  const archive = positionals[0];
  if (archive === undefined || values.key === undefined) return usage(io, SIGN_USAGE, true);
  if (archive.endsWith('.sig')) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${archive} is a signature; sign the archive itself`);
  const r = await signArchiveFile(archive, values.key);
  if (r.keyTooOpen) io.err(`warning: ${values.key} can be read by group or others; run: chmod 600 ${values.key}`);
  if (values.json) io.out(JSON.stringify({ id: r.id, version: r.version, sha256: r.sha256, signature_file: r.signaturePath, signature: r.signature }));
  else {
    io.out(`signed ${r.id} ${r.version} as publisher "${r.signature.publisher}": ${r.signaturePath}`);
    io.out(`sha256 ${r.sha256}`);
    io.out(`public key ${r.signature.public_key}`);
  }
  return 0;
}
