// What a CLI command loads (structural, not timed): the CLI imports each command's module when that
// command runs, so a command loads only what it uses. A command through a running gateway (ping,
// tool list, run list/get) loads the client: not the kernel runtime, the sandbox (Extism), the
// database, TypeBox or ajv. A command on the home's core (approvals list, audit verify, token list)
// opens the database and the audit log, but loads no runtime, plugin, sandbox, policy or MCP code;
// one on the whole home (plugin list, mcp list, policy show) loads its services but not the
// gateway's own machinery (network edge, engine, sandbox host, MCP SDK). --help and version load
// next to nothing. Each command runs as a real process from source with
// test/helpers/record-loads.ts preloaded, which lists every module the process resolved.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCli, cliGateway } from '../../helpers/cli.js';

const RECORDER = new URL('../../helpers/record-loads.ts', import.meta.url).href;
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Loaded {
  code: number | null;
  out: string;
  err: string;
  /** Paths relative to the checkout (node_modules/... for packages), or the URL (node:fs). */
  modules: string[];
}

async function loads(argv: string[], env: Record<string, string> = {}): Promise<Loaded> {
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-loads-'));
  const file = join(dir, 'modules.txt');
  try {
    const p = spawnCli(argv, { env: { ...process.env, ...env, TYRUM_RECORD_LOADS: file }, imports: [RECORDER] });
    const code = await p.exit(60_000);
    const urls = readFileSync(file, 'utf8').split('\n').filter((u) => u !== '');
    const modules = [...new Set(urls.map((u) => (u.startsWith('file:') ? relative(ROOT, fileURLToPath(u)) : u)))];
    return { code, out: p.out(), err: p.err(), modules };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What no light command may load, by name. */
const KERNEL: Record<string, RegExp> = {
  'the kernel runtime (core/runtime.ts)': /^core\/runtime\.ts$/,
  'the sandbox': /^sandbox\//,
  '@extism/extism': /node_modules\/@extism\//,
  'the plugin registry and host': /^core\/registry\//,
  'plugin manifests and archives': /^manifests\//,
  'policy': /^core\/policy\//,
  'MCP servers': /^core\/mcp\//,
  'the MCP SDK': /node_modules\/@modelcontextprotocol\//,
  'the execution engine': /^core\/execution\/engine\.ts$/,
  'the network edge (fastify)': /node_modules\/fastify\//,
  'the author toolchain': /^sdk\/author\//,
};
/** What a command that only talks to a running gateway may not load either. */
const CLIENT_ONLY: Record<string, RegExp> = {
  ...KERNEL,
  'TypeBox (the contracts)': /node_modules\/@sinclair\/typebox\//,
  'ajv (schema compilation)': /node_modules\/ajv\//,
  'the contracts (schemas/index.ts)': /^schemas\/index\.ts$/,
  'config.json validation (core/config/index.ts)': /^core\/config\/index\.ts$/,
  'the database (better-sqlite3)': /node_modules\/better-sqlite3\//,
  'the store': /^core\/store\//,
};

function notLoaded(t: Test, r: Loaded, forbidden: Record<string, RegExp>, what: string): void {
  for (const [name, re] of Object.entries(forbidden)) {
    const hits = r.modules.filter((m) => re.test(m));
    t.same(hits, [], `${what} does not load ${name}`);
  }
}

t.test('--help and version load neither the kernel, the client nor any schema', async (t) => {
  for (const argv of [['--help'], ['version']]) {
    const r = await loads(argv);
    t.equal(r.code, 0, r.err);
    t.ok(r.modules.includes('core/cli/main.ts'), 'the recorder saw the CLI load');
    notLoaded(t, r, { ...CLIENT_ONLY, 'the client SDK': /^sdk\/|node_modules\/ws\// }, `tyrum ${argv.join(' ')}`);
  }
});

t.test('commands through a running gateway load the client only', async (t) => {
  const { env } = await cliGateway(t);
  const ping = await loads(['ping'], env);
  t.equal(ping.code, 0, ping.err);
  t.match(ping.out, /^pong from /);
  t.ok(ping.modules.includes('core/cli/ping.ts') && ping.modules.includes('sdk/client/client.ts'), 'the recorder saw the command and the client load');
  notLoaded(t, ping, CLIENT_ONLY, 'tyrum ping');

  const tools = await loads(['tool', 'list', '--json'], env);
  t.equal(tools.code, 0, tools.err);
  t.ok(Array.isArray((JSON.parse(tools.out) as { tools: unknown[] }).tools), 'tool list answered');
  notLoaded(t, tools, CLIENT_ONLY, 'tyrum tool list');

  const runs = await loads(['run', 'list', '--json'], env);
  t.equal(runs.code, 0, runs.err);
  notLoaded(t, runs, CLIENT_ONLY, 'tyrum run list');

  // An unknown run: the gateway's answer (not_found), through the same modules as a known one.
  const get = await loads(['run', 'get', '00000000-0000-4000-8000-000000000000'], env);
  t.equal(get.code, 1);
  t.match(get.err, /run\.get: not_found/);
  notLoaded(t, get, CLIENT_ONLY, 'tyrum run get');
});

t.test('commands on the home core open the database and audit log, not the kernel runtime', async (t) => {
  const { H } = await cliGateway(t);
  for (const argv of [['approvals', 'list', '--json'], ['audit', 'verify', '--json'], ['token', 'list', '--json'], ['secret', 'list', '--json']]) {
    const r = await loads([...argv, ...H]);
    t.equal(r.code, 0, `tyrum ${argv.join(' ')}: ${r.err}`);
    t.ok(r.modules.includes('core/home.ts') && r.modules.includes('core/store/index.ts'), `tyrum ${argv.join(' ')} opened the home's core`);
    notLoaded(t, r, KERNEL, `tyrum ${argv.join(' ')}`);
  }
});

t.test('commands on the whole home (plugin, mcp, policy) load its services, not the gateway they are not running', async (t) => {
  const { H } = await cliGateway(t);
  const gateway: Record<string, RegExp> = {
    'the network edge (core/gateway)': /^core\/gateway\//,
    'fastify': /node_modules\/fastify\//,
    'the protocol handlers': /^core\/protocol\/handlers\.ts$/,
    'the execution engine': /^core\/execution\/engine\.ts$/,
    'the sandbox host': /^core\/registry\/host\.ts$/,
    '@extism/extism': /node_modules\/@extism\//,
    'MCP clients and the /mcp endpoint': /^core\/mcp\/(host|endpoint|probe|client|stdio|wasm)\.ts$/,
    'the MCP SDK': /node_modules\/@modelcontextprotocol\//,
    'the author toolchain': /^sdk\/author\//,
  };
  for (const argv of [['plugin', 'list', '--json'], ['mcp', 'list', '--json'], ['policy', 'show', '--json']]) {
    const r = await loads([...argv, ...H]);
    t.equal(r.code, 0, `tyrum ${argv.join(' ')}: ${r.err}`);
    t.ok(r.modules.includes('core/registry/plugins.ts'), `tyrum ${argv.join(' ')} opened the home's services`);
    notLoaded(t, r, gateway, `tyrum ${argv.join(' ')}`);
  }
});

t.test('the author commands are reached through their one lazy entry, each loading only its own toolchain', async (t) => {
  const r = await loads(['plugin', 'new', '--help']);
  t.equal(r.code, 0, r.err);
  t.ok(r.modules.includes('sdk/author/cli/index.ts') && r.modules.includes('sdk/author/cli/new-build.ts'), 'plugin new loads sdk/author/cli');
  notLoaded(t, r, { 'the test harness': /^sdk\/author\/harness\.ts$/, '@extism/extism': /node_modules\/@extism\//, 'the kernel runtime': /^core\/runtime\.ts$/ }, 'tyrum plugin new --help');
});

t.test('a gateway with tracing off loads no OpenTelemetry code; one with an OTLP endpoint loads it behind core/telemetry/tracing.ts', async (t) => {
  const { mkdirSync, writeFileSync } = await import('node:fs');
  for (const traced of [false, true]) {
    const home = join(t.testdir(), traced ? 'traced' : 'plain');
    mkdirSync(home, { recursive: true });
    // Port 9 (discard): nothing is exported in this test, the exporter only has to exist.
    if (traced) writeFileSync(join(home, 'config.json'), JSON.stringify({ telemetry: { otlp_endpoint: 'http://127.0.0.1:9/v1/traces' } }));
    const file = join(home, 'modules.txt');
    const p = spawnCli(['start', '--home', home, '--port', '0', '--log-level', 'silent'], { env: { ...process.env, TYRUM_RECORD_LOADS: file }, imports: [RECORDER] });
    t.teardown(() => void p.child.kill('SIGKILL'));
    await p.waitErr(/listening on ws:\/\//);
    p.child.kill('SIGTERM');
    t.equal(await p.exit(30_000), 0, p.err());
    const modules = readFileSync(file, 'utf8').split('\n').filter((u) => u.startsWith('file:')).map((u) => relative(ROOT, fileURLToPath(u)));
    t.ok(modules.includes('core/telemetry/metrics.ts'), 'metrics are always on');
    const otel = modules.filter((m) => /node_modules\/@opentelemetry\//.test(m));
    if (traced) {
      t.ok(modules.includes('core/telemetry/tracing.ts') && otel.length > 0, 'tracing on: the OpenTelemetry SDK is loaded');
    } else {
      t.same(otel, [], 'tracing off: no OpenTelemetry module');
      t.notOk(modules.includes('core/telemetry/tracing.ts'), 'nor the module that wraps it');
    }
  }
});
