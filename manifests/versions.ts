/**
 * What replacing an installed plugin version with another means: the same content again, an
 * upgrade (with the permissions it newly asks for), or a downgrade (refused unless explicit).
 */
import semver from 'semver';
import type { PluginManifest } from '../schemas/index.js';
import { TyrumError } from '../core/errors/index.js';
import { canonicalJson } from '../core/util/canonical-json.js';
import { permissionDiff, type PermissionChange } from './capabilities.js';
import { versionProblem } from './manifest.js';

/** The outcome of {@link compareVersions}. */
export interface VersionComparison {
  /** `same`: identical manifest (and so identical module, which the manifest pins by digest). */
  kind: 'same' | 'upgrade' | 'downgrade';
  from: string;
  to: string;
  /** What the candidate asks for beyond the installed version; empty: no new grant needed. */
  diff: PermissionChange[];
}

export interface CompareOptions {
  /** Accept a lower version (an operator's explicit choice, e.g. a rollback). Default false. */
  allowDowngrade?: boolean;
}

/**
 * Compare an installed manifest with a candidate for the same plugin id. Refuses a downgrade
 * without `allowDowngrade` (TYRUM_ERR_PLUGIN_DOWNGRADE) and the same version with different
 * content (TYRUM_ERR_PLUGIN_VERSION_CONFLICT: a published version is immutable). Content is
 * compared on the canonical JSON of the manifests, which pin the module by its sha256.
 */
export function compareVersions(installed: PluginManifest, candidate: PluginManifest, opts: CompareOptions = {}): VersionComparison {
  if (installed.id !== candidate.id) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `cannot compare versions of different plugins (${installed.id}, ${candidate.id})`);
  }
  const from = installed.version;
  const to = candidate.version;
  for (const v of [from, to]) {
    const problem = versionProblem(v);
    if (problem) throw new TyrumError('TYRUM_ERR_MANIFEST_INVALID', `version: ${JSON.stringify(String(v).slice(0, 80))} ${problem}`, { field: 'version' });
  }
  const order = semver.compare(to, from);
  if (order === 0) {
    if (canonicalJson(installed) === canonicalJson(candidate)) return { kind: 'same', from, to, diff: [] };
    const what = installed.wasm.sha256 !== candidate.wasm.sha256 ? `wasm sha256 ${installed.wasm.sha256} installed, ${candidate.wasm.sha256} offered` : 'the manifests differ';
    throw new TyrumError('TYRUM_ERR_PLUGIN_VERSION_CONFLICT', `${candidate.id}@${to} is already installed with different content (${what}); publish it under a new version`, {
      id: candidate.id,
      installed: from,
      candidate: to,
    });
  }
  const diff = permissionDiff(installed, candidate);
  if (order < 0) {
    if (!opts.allowDowngrade) {
      throw new TyrumError('TYRUM_ERR_PLUGIN_DOWNGRADE', `${candidate.id}: ${to} is older than the installed ${from}; a downgrade must be explicit (allowDowngrade)`, {
        id: candidate.id,
        installed: from,
        candidate: to,
      });
    }
    return { kind: 'downgrade', from, to, diff };
  }
  return { kind: 'upgrade', from, to, diff };
}
