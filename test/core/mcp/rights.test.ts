/** The rights an MCP server's tools carry for policy: its origin as egress, its secrets bound to that origin. */
import t from 'tap';
import { mcpRights } from '../../../core/mcp/registry.js';
import { destinationAllows } from '../../../core/secrets/destination.js';

t.test('an HTTP server: egress to its origin, header secrets bound to the same origin', async (t) => {
  const plain = mcpRights({ transport: 'streamable_http', url: 'http://127.0.0.1:8080/mcp', headers: { Authorization: 'Bearer {{secret:UP}}' } });
  t.same(plain.egress, [{ host: '127.0.0.1', port: 8080, scheme: 'http', methods: ['POST', 'GET', 'DELETE'] }]);
  t.same(plain.secrets, [{ name: 'UP', destinations: ['http://127.0.0.1:8080'] }], 'not the bare host, which would mean https:443');
  t.ok(destinationAllows(plain.secrets[0]!.destinations[0]!, { scheme: 'http', host: '127.0.0.1', port: 8080 }));

  const tls = mcpRights({ transport: 'streamable_http', url: 'https://API.example.com/mcp', headers: { 'X-Key': '{{secret:KEY}}' } });
  t.same(tls.egress, [{ host: 'api.example.com', port: 443, scheme: 'https', methods: ['POST', 'GET', 'DELETE'] }]);
  t.same(tls.secrets, [{ name: 'KEY', destinations: ['api.example.com'] }], 'https on 443 is the bare host');
});

t.test('a stdio server: no egress, secrets without a destination', async (t) => {
  t.same(mcpRights({ transport: 'stdio', command: 'node', env: { TOKEN: '{{secret:TOK}}' } }), { egress: [], secrets: [{ name: 'TOK', destinations: [] }] });
});
