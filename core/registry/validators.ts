/**
 * Compiled validators of plugin tool schemas, shared by content. A schema is known by the sha256
 * of its RFC 8785 canonical form, the same form the tool's definition hash covers, so an
 * unchanged tool keeps its compiled validator across lifecycle changes and two tools (of two
 * plugins) with identical schemas share one. A validator is compiled on its first use, never when
 * a catalog entry is built, and forgotten (ajv would keep it alive) once no entry holds it.
 */
import { createHash } from 'node:crypto';
import type { ValidateFunction } from 'ajv';
import { compilePluginSchema, forgetPluginSchema } from '../../manifests/index.js';
import { canonicalJson } from '../util/canonical-json.js';

/** One holder's handle on a shared validator. */
export interface SchemaRef {
  /** sha256 (hex) of the schema's canonical JSON. */
  readonly hash: string;
  /** The compiled validator (compiled on the first call, then the same function every time). */
  validator(): ValidateFunction;
}

interface Shared {
  schema: Record<string, unknown>;
  label: string;
  fn: ValidateFunction | null;
  refs: number;
}

export class ValidatorCache {
  private readonly shared = new Map<string, Shared>();
  /** Schemas compiled so far (tests observe that an unchanged tool is never recompiled). */
  compiles = 0;

  /** A handle on the validator of `schema`; give it back with {@link release}. */
  acquire(schema: Record<string, unknown>, label: string): SchemaRef {
    const hash = createHash('sha256').update(canonicalJson(schema)).digest('hex');
    let s = this.shared.get(hash);
    if (!s) {
      s = { schema, label, fn: null, refs: 0 };
      this.shared.set(hash, s);
    }
    s.refs += 1;
    const entry = s;
    return {
      hash,
      validator: () => {
        if (entry.fn === null) {
          entry.fn = compilePluginSchema(entry.schema, entry.label);
          this.compiles += 1;
        }
        return entry.fn;
      },
    };
  }

  /** Gives back a handle; the validator is forgotten when its last holder lets go. */
  release(ref: SchemaRef): void {
    const s = this.shared.get(ref.hash);
    if (!s) return;
    s.refs -= 1;
    if (s.refs > 0) return;
    this.shared.delete(ref.hash);
    if (s.fn !== null) forgetPluginSchema(s.schema);
  }

  /** Distinct schemas held, and how many of them are compiled. */
  size(): { schemas: number; compiled: number } {
    let compiled = 0;
    for (const s of this.shared.values()) if (s.fn !== null) compiled += 1;
    return { schemas: this.shared.size, compiled };
  }
}
