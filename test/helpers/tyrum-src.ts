// `bin/tyrum.js` run from the TypeScript sources (`node --import tsx test/helpers/tyrum-src.ts ARGS`),
// so tests of the real process need no `npm run build`: the same entry (runProcess) as the bin.
import { runProcess } from '../../core/cli/main.js';

await runProcess();
