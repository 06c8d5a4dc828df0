import t, { type Test } from 'tap';
import { forEachBackend } from '../../helpers/store-backends.js';

forEachBackend(t, 'MCP tools: what a server lists is observed, what it stops listing is forgotten unless approved', async (t: Test, { repos: s }) => {
  s.mcp.insertServer({ name: 'fs', origin: 'operator', description: '', spec: '{}', spec_digest: 'd1', state: 'quarantined', created_at: 1, updated_at: 1 });
  t.throws(() => s.mcp.insertServer({ name: 'x', origin: 'operator', description: '', spec: '{}', spec_digest: 'd', state: 'bogus' as never, created_at: 1, updated_at: 1 }), /CHECK/);
  s.mcp.observe('fs', [{ name: 'read', observed: '{"r":1}', observed_hash: 'hr', refused: null }, { name: 'write', observed: '{"w":1}', observed_hash: 'hw', refused: null }], 2);
  t.equal(s.mcp.approveTool('fs', 'read', 'read_only', 3, 'op'), true);
  s.mcp.observe('fs', [{ name: 'list', observed: '{}', observed_hash: 'hl', refused: null }], 4);
  t.same(s.mcp.tools('fs').map((x) => [x.name, x.observed_hash, x.approved_hash]), [['list', 'hl', null], ['read', null, 'hr']], 'write was never approved: forgotten; read was: kept, no longer observed');
  s.mcp.observe('fs', [], 5);
  t.same(s.mcp.tools('fs').map((x) => x.name), ['read']);
  t.equal(s.mcp.setState('fs', 'approved', 6, 'op'), true);
  s.mcp.setHealth('fs', '{"ok":true}');
  t.match(s.mcp.getServer('fs'), { state: 'approved', approved_by: 'op', health: '{"ok":true}' });
  t.equal(s.mcp.removeServer('fs'), true);
  t.same(s.mcp.allTools(), [], 'tools go with their server');
});
