// Preloaded into a process with `--import` (after tsx): appends the URL of every module the
// process resolves, one per line, to the file named by $TYRUM_RECORD_LOADS. Static and dynamic
// imports both pass through the resolve hook, so the file lists every module the command loaded
// (a CommonJS package's own internal require()s excepted; its entry point is listed).
import { register } from 'node:module';

const hooks = `
import { appendFileSync } from 'node:fs';
const out = process.env.TYRUM_RECORD_LOADS;
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (out) appendFileSync(out, r.url + '\\n');
  return r;
}
`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
