import t from 'tap';
import { closeReason } from '../../../core/protocol/session.js';

t.test('close reasons are cut to 123 UTF-8 bytes on a character boundary', async (t) => {
  t.equal(closeReason('short'), 'short');
  const ascii = 'a'.repeat(200);
  t.equal(Buffer.byteLength(closeReason(ascii)), 123);
  for (const ch of ['é', '€', '😀']) {
    const cut = closeReason(`unknown key "${ch.repeat(100)}"`);
    t.ok(Buffer.byteLength(cut) <= 123, `${ch}: ${Buffer.byteLength(cut)} bytes`);
    t.notMatch(cut, /\ufffd/, `${ch}: no broken character`);
    t.ok(`unknown key "${ch.repeat(100)}"`.startsWith(cut), `${ch}: a prefix of the original`);
  }
});
