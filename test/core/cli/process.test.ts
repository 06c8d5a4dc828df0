// The `tyrum` process itself (from source, test/helpers/tyrum-src.ts): `tyrum ... | head` ends
// quietly when the reader goes away (EPIPE), as Unix tools do.
import t from 'tap';
import { spawnCli } from '../../helpers/cli.js';

t.test('a reader that goes away (| head) ends the command quietly, exit 0, no EPIPE stack trace', async (t) => {
  for (const argv of [['help'], ['--version']]) {
    const p = spawnCli(argv);
    t.teardown(() => void p.child.kill('SIGKILL'));
    p.child.stdout.destroy(); // the reader is gone before the first write
    t.equal(await p.exit(30_000), 0, `tyrum ${argv.join(' ')}`);
    t.notMatch(p.err(), /EPIPE|Error|\n\s+at /, 'nothing on stderr about it');
  }
});
