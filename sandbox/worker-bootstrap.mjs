// Worker entry used when the sandbox runs from its TypeScript sources (tests, `node --import tsx`):
// registers tsx in this worker thread, then loads the real worker. Compiled builds start
// dist/sandbox/worker.js directly and never use this file.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
