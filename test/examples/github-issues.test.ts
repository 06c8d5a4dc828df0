// examples/github-issues, built from source and run in a real SandboxPool against a local HTTP
// server on 127.0.0.1 that speaks the shape of GitHub's REST API (issue objects full of fields the
// plugin must ignore, 201 on create, 404 {message: "Not Found"}, 401 for a wrong token, 422 on a
// validation failure).
//
// Most tests use an egress stand-in: it allows exactly the effective rights of the shipped manifest
// under a test grant naming the server, and fills `{{secret:GITHUB_TOKEN}}` in only toward the host
// the secret is bound to. The last tests use the gateway's real egress (core/egress) with a real
// secret store. The plugin must send the template, never a value; the server must receive the value;
// no output, log or error may contain it.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { createEgressHandler, type EgressRecord } from '../../core/egress/index.js';
import { validate } from '../../core/protocol/validate.js';
import { loadSecretKey, Redactor, SecretStore } from '../../core/secrets/index.js';
import { openStore } from '../../core/store/index.js';
import { effectiveRights, impliedRisks, type EffectiveRights } from '../../manifests/capabilities.js';
import { readPluginSource, validatePluginConfig } from '../../manifests/index.js';
import { PluginManifest } from '../../schemas/index.js';
import { SandboxPool, sandboxError, sandboxReason, type EgressHandler, type EgressRequest } from '../../sandbox/index.js';
import { dec, enc, ensureBuiltAs, EXAMPLES, label, loadBuilt, pluginAjv, readPluginDir, sha256, toolSchemas } from './helpers.js';

ensureBuiltAs('github-issues');
const SOURCE_DIR = join(EXAMPLES, 'github-issues');
const plugin = readPluginDir(join(SOURCE_DIR, 'build'));
const schemas = toolSchemas(plugin.manifest);
const CANARY = `ghp_${randomBytes(18).toString('hex')}`;

type Json = Record<string, unknown>;

// --- a small GitHub ----------------------------------------------------------------------------------

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
const seen: Seen[] = [];

interface Issue {
  number: number;
  title: string;
  state: 'open' | 'closed';
  body: string | null;
  pr?: boolean;
}
const HTML = 'https://github.example';

/** An issue as GitHub's API returns it: the four fields the plugin reads among many it must ignore. */
function apiIssue(owner: string, repo: string, i: Issue): Json {
  const api = `https://api.github.example/repos/${owner}/${repo}`;
  return {
    url: `${api}/issues/${i.number}`,
    repository_url: api,
    labels_url: `${api}/issues/${i.number}/labels{/name}`,
    html_url: `${HTML}/${owner}/${repo}/${i.pr === true ? 'pull' : 'issues'}/${i.number}`,
    id: 9_007_199_254_740_000 + i.number,
    node_id: `I_kwDO${i.number}`,
    // The same names one level down must not be taken for the issue's own.
    user: { login: 'octocat', id: 1, title: 'not the title', number: -1, html_url: 'https://github.example/octocat', site_admin: false },
    labels: [{ id: 208045946, name: 'bug', color: 'f29513', default: true, description: 'Something "isn\'t" working }]' }],
    state: i.state,
    locked: false,
    assignee: null,
    assignees: [],
    milestone: i.number === 2 ? { number: 42, title: 'v1.0', state: 'open', html_url: `${HTML}/${owner}/${repo}/milestone/42` } : null,
    comments: i.number * 3,
    created_at: '2026-01-01T00:00:00Z',
    closed_at: i.state === 'closed' ? '2026-01-02T00:00:00Z' : null,
    author_association: 'OWNER',
    number: i.number,
    title: i.title,
    body: i.body,
    reactions: { url: `${api}/issues/${i.number}/reactions`, total_count: 0, '+1': 0, nested: [[[{ number: 0 }]]] },
    ...(i.pr === true ? { pull_request: { url: `${api}/pulls/${i.number}`, html_url: `${HTML}/${owner}/${repo}/pull/${i.number}`, merged_at: null } } : {}),
    performed_via_github_app: null,
    state_reason: i.state === 'closed' ? 'completed' : null,
  };
}

const NASTY_BODY = 'Body with "quotes", a backslash \\, braces }]{[, "number": 999, "title": "fake", and \u2028 😀 \u0000';
const repos = new Map<string, Issue[]>([
  [
    'octo/hello',
    [
      { number: 1, title: 'First issue', state: 'closed', body: null },
      { number: 2, title: 'Crème brûlée 😀 "quoted" \\ back\\slash 你好', state: 'open', body: NASTY_BODY },
      { number: 3, title: 'Third', state: 'open', body: '' },
      { number: 4, title: 'A pull request', state: 'open', body: 'PR body', pr: true },
      { number: 5, title: 'Closed again', state: 'closed', body: 'x'.repeat(5000) },
    ],
  ],
  ['octo/empty', []],
  ['big-org/huge.repo_name', Array.from({ length: 100 }, (_, k) => ({ number: k + 1, title: `Issue ${k + 1}`, state: 'open' as const, body: 'é'.repeat(40_000) }))],
]);

/** Answers by repository: GitHub's error shapes, and broken bodies for the error paths. */
const RAW: Record<string, { status: number; body: string }> = {
  'octo/html': { status: 200, body: '<html>rate limited by a proxy</html>' },
  'octo/object': { status: 200, body: '{"message": "an object, not a list"}' },
  'octo/no-title': { status: 200, body: '[{"number": 1, "state": "open", "html_url": "https://github.example/o/r/issues/1"}]' },
  'octo/float': { status: 200, body: '[{"number": 1.5, "title": "x", "state": "open", "html_url": "u"}]' },
  // Escaped key spellings and white space everywhere: what matters is the JSON, not the bytes.
  'octo/escaped': { status: 200, body: ' [ { "html\\u005furl" : "https://github.example/o/r/issues/9" , "n\\u0075mber" : 9 ,\n"title":"T\\u00e9\\ud83d\\ude00","state" :"open" } ] ' },
  'octo/boom': { status: 500, body: 'Internal Server Error' },
  'octo/long-message': { status: 403, body: JSON.stringify({ message: `API rate limit exceeded\r\n${'z'.repeat(1000)}`, documentation_url: 'https://docs.github.com/rest' }) },
};

let nextNumber = 100;
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-github-media-type': 'github.v3' });
      res.end(JSON.stringify(value));
    };
    const url = new URL(req.url ?? '/', 'http://x');
    // GitHub Enterprise Server serves the same API under /api/v3.
    const path = url.pathname.replace(/^\/api\/v3(?=\/)/, '');
    const m = /^\/repos\/([^/]+)\/([^/]+)\/issues$/.exec(path);
    if (m === null) return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    if (req.headers.authorization !== `Bearer ${CANARY}`) return json(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    const [owner, repo] = [m[1] ?? '', m[2] ?? ''];
    const raw = RAW[`${owner}/${repo}`];
    if (raw !== undefined) {
      res.writeHead(raw.status, { 'content-type': raw.body.startsWith('<') || raw.status === 500 ? 'text/html' : 'application/json' });
      return res.end(raw.body);
    }
    const issues = repos.get(`${owner}/${repo}`);
    if (issues === undefined) return json(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest/issues/issues' });
    if (req.method === 'GET') {
      const state = url.searchParams.get('state') ?? 'open';
      const perPage = Number(url.searchParams.get('per_page') ?? 30);
      const page = Number(url.searchParams.get('page') ?? 1);
      const list = [...issues].reverse().filter((i) => state === 'all' || i.state === state);
      return json(200, list.slice((page - 1) * perPage, page * perPage).map((i) => apiIssue(owner, repo, i)));
    }
    if (req.method === 'POST') {
      let payload: Json;
      try {
        payload = JSON.parse(body) as Json;
      } catch {
        return json(400, { message: 'Problems parsing JSON' });
      }
      if (typeof payload.title !== 'string' || payload.title.trim() === '') {
        return json(422, { message: 'Validation Failed', errors: [{ resource: 'Issue', code: 'missing_field', field: 'title' }], documentation_url: 'https://docs.github.com/rest' });
      }
      const issue: Issue = { number: nextNumber++, title: payload.title, state: 'open', body: typeof payload.body === 'string' ? payload.body : null };
      issues.push(issue);
      return json(201, apiIssue(owner, repo, issue));
    }
    return json(404, { message: 'Not Found' });
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

// --- the operator's grant and the egress stand-in ------------------------------------------------------

/** The shipped manifest asks for operator-named hosts ("*"); this grant names the test server. */
const GRANT = {
  egress: [{ host: '127.0.0.1', scheme: 'http' as const, port, methods: ['GET' as const, 'POST' as const] }],
  secrets: [{ name: 'GITHUB_TOKEN', destinations: ['127.0.0.1'] }],
  accept_risks: ['network' as const, 'secrets' as const, 'state_changing' as const],
};
const rights = effectiveRights(plugin.manifest, GRANT);
const TEMPLATE = /\{\{secret:([A-Z][A-Z0-9_]{0,63})\}\}/g;
const HAS_TEMPLATE = /\{\{\s*secret:/i;

const egressSeen: EgressRequest[] = [];

/** A stand-in for the gateway's checked egress, with `values` as the secret store. */
function standIn(r: EffectiveRights, values: Record<string, string>): EgressHandler {
  return async (req) => {
    egressSeen.push(req);
    const url = new URL(req.url);
    const scheme = url.protocol.slice(0, -1);
    const portNum = Number(url.port || (scheme === 'https' ? 443 : 80));
    const rule = r.egress.find((x) => x.host === url.hostname && x.port === portNum && x.scheme === scheme);
    if (rule === undefined || !rule.methods.includes(req.method)) {
      throw sandboxError('capability_denied', `egress to ${req.method} ${scheme}://${url.host} is not granted`, { host: url.hostname });
    }
    const body = req.body === null ? '' : dec(req.body);
    if (HAS_TEMPLATE.test(req.url) || HAS_TEMPLATE.test(body)) throw sandboxError('capability_denied', 'a secret template outside a header value', {});
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      headers[k] = v.replace(TEMPLATE, (_m, name: string) => {
        const bound = r.secrets.find((s) => s.name === name);
        if (bound === undefined || !bound.destinations.includes(url.hostname)) {
          throw sandboxError('capability_denied', `secret handle ${name} may not be sent to ${url.hostname}`, { secret: name });
        }
        return values[name] ?? '';
      });
    }
    const res = await fetch(req.url, { method: req.method, headers, body: req.body ?? undefined, redirect: 'manual', signal: req.signal });
    const resBody = new Uint8Array(await res.arrayBuffer());
    if (resBody.byteLength > req.maxResponseBytes) throw sandboxError('budget_exceeded', 'response too large', { budget: 'egress_bytes' });
    return { status: res.status, headers: Object.fromEntries(res.headers), body: resBody };
  };
}
const egress = standIn(rights, { GITHUB_TOKEN: CANARY });

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());
const BASE = `http://127.0.0.1:${port}`;
const ready = loadBuilt(pool, 'github-issues', plugin, { config: { base_url: BASE }, hostApi: { egress } });

type Tool = 'list_issues' | 'create_issue';

/** Call a tool with schema-valid args; the output must satisfy the tool's output schema and hold no secret. */
async function call(tool: Tool, args: Json, key = 'github-issues'): Promise<Json> {
  const s = schemas.get(tool);
  if (s === undefined) throw new Error(`no tool ${tool}`);
  if (!s.input(structuredClone(args))) throw new Error(`test bug: ${label(args)} does not satisfy ${tool}'s input schema: ${JSON.stringify(s.input.errors)}`);
  await ready;
  const r = await pool.call(key, tool, enc(args));
  const raw = dec(r.output);
  if (raw.includes(CANARY)) throw new Error('the output holds the secret');
  for (const l of r.logs) if (l.message.includes(CANARY)) throw new Error('a log line holds the secret');
  const out = JSON.parse(raw) as Json;
  if (!s.output(out)) throw new Error(`${tool} output violates its schema: ${JSON.stringify(s.output.errors)} in ${raw.slice(0, 300)}`);
  return out;
}

/** Call with any input and return the error the call fails with (never holding the secret). */
async function failure(tool: Tool, input: unknown, key = 'github-issues'): Promise<Error> {
  await ready;
  const e = await pool.call(key, tool, enc(input as Json)).then(
    () => new Error('expected the call to fail'),
    (err: unknown) => err as Error,
  );
  if (JSON.stringify({ m: e.message, d: (e as { details?: unknown }).details }).includes(CANARY)) throw new Error('an error holds the secret');
  return e;
}

const issuesOf = (out: Json) => out.issues as Array<Json>;

// --- the package ---------------------------------------------------------------------------------------

t.test('the manifest asks for what the tools need and declares the implied risks', async (t) => {
  t.same(validate(PluginManifest, plugin.manifest), [], 'build/tyrum.plugin.json satisfies the manifest contract');
  t.equal(plugin.manifest.wasm.sha256, sha256(plugin.wasm), 'the manifest digest is the digest of build/plugin.wasm');
  const source = readPluginDir(SOURCE_DIR).manifest;
  t.same({ ...plugin.manifest, wasm: source.wasm }, source, 'the build manifest is the source manifest with only wasm changed');
  t.same(source.wasm, { path: 'build/plugin.wasm', sha256: '0'.repeat(64) });
  t.same(plugin.manifest.requests?.egress, [{ host: '*', methods: ['GET', 'POST'] }], 'hosts the operator names, GET and POST');
  t.same(plugin.manifest.requests?.secrets?.map((s) => ({ name: s.name, destinations: s.destinations })), [{ name: 'GITHUB_TOKEN', destinations: ['*'] }]);
  t.same([...(plugin.manifest.risk ?? [])].sort(), ['network', 'secrets', 'state_changing']);
  t.same(impliedRisks(plugin.manifest).sort(), [...(plugin.manifest.risk ?? [])].sort(), 'every implied risk is declared, and only those');
  t.same(
    plugin.manifest.contributes.tools.map((tool) => [tool.id, tool.effect]),
    [
      ['list_issues', 'read_only'],
      ['create_issue', 'state_changing'],
    ],
  );
  t.same(rights.missing_risks, [], 'the test grant accepts every risk');
  t.same(rights.egress, [{ host: '127.0.0.1', port, scheme: 'http', methods: ['GET', 'POST'] }], 'the grant fills the "*" request with the named host only');
});

t.test('installable: the built directory passes readPluginSource; the unbuilt source is refused', async (t) => {
  const src = await readPluginSource(plugin.dir);
  t.equal(src.manifest.id, 'github-issues');
  t.equal(src.wasmSha256, sha256(plugin.wasm));
  t.same(src.manifest.contributes.tools.map((x) => x.export), ['list_issues', 'create_issue']);
  const err = await readPluginSource(SOURCE_DIR).then(
    () => null,
    (e: unknown) => e as Error,
  );
  t.match(err?.message, /sha256 mismatch/, 'the placeholder digest never matches a module');
});

t.test('config_schema: defaults to api.github.com and the GITHUB_TOKEN handle; token_handle is a secret field', async (t) => {
  const check = pluginAjv().compile(plugin.manifest.config_schema ?? {});
  const cfg: Json = {};
  t.ok(check(cfg));
  t.same(cfg, { base_url: 'https://api.github.com', token_handle: 'GITHUB_TOKEN' }, 'the defaults are filled in');
  const props = (plugin.manifest.config_schema as { properties: Record<string, Json> }).properties;
  t.equal(props.token_handle?.['x-tyrum-secret'], true);
  for (const bad of [{ base_url: 'ftp://x' }, { base_url: 'https://user@github.example' }, { base_url: 'https://a/?q=1' }, { token_handle: 'ghp_value' }, { extra: 1 }]) {
    t.notOk(check(bad), `refused: ${label(bad)}`);
  }
  // The gateway's own config check: the default handle must exist and be granted.
  const lookup = (exists: boolean, granted: boolean) => ({ secretExists: () => exists, secretGranted: () => granted });
  t.same(validatePluginConfig(plugin.manifest, { base_url: 'https://ghe.example.com/api/v3' }, lookup(true, true)), { base_url: 'https://ghe.example.com/api/v3', token_handle: 'GITHUB_TOKEN' });
  t.throws(() => validatePluginConfig(plugin.manifest, {}, lookup(true, false)), { message: /secret handle GITHUB_TOKEN is not granted to github-issues/ });
  t.throws(() => validatePluginConfig(plugin.manifest, { token_handle: 'OTHER' }, lookup(true, true)), { message: /OTHER is not among the secrets github-issues requests/ });
});

t.test('the module imports only the Extism kernel (with http_request and http_status_code) and env.abort', async (t) => {
  const info = await ready;
  for (const imp of info.imports) t.ok(imp.startsWith('extism:host/env.') || imp === 'env.abort', `allowed import ${imp}`);
  t.ok(info.imports.includes('extism:host/env.http_request'));
  t.ok(info.imports.includes('extism:host/env.http_status_code'));
  t.notOk(info.imports.some((i) => i.startsWith('tyrum:host/v1.')), 'no key-value storage');
});

// --- list_issues ---------------------------------------------------------------------------------------

t.test('list_issues: GET with the secret handle; the server gets the token, the output only the four fields', async (t) => {
  const before = seen.length;
  const egressBefore = egressSeen.length;
  const out = await call('list_issues', { owner: 'octo', repo: 'hello' });
  t.same(out, {
    issues: [
      { number: 4, title: 'A pull request', state: 'open', url: `${HTML}/octo/hello/pull/4`, pull_request: true },
      { number: 3, title: 'Third', state: 'open', url: `${HTML}/octo/hello/issues/3` },
      { number: 2, title: 'Crème brûlée 😀 "quoted" \\ back\\slash 你好', state: 'open', url: `${HTML}/octo/hello/issues/2` },
    ],
  });
  t.equal(seen.length, before + 1, 'one request');
  const req = seen[before];
  t.equal(req?.method, 'GET');
  t.equal(req?.url, '/repos/octo/hello/issues?state=open&per_page=30', 'defaults: open issues, 30 a page');
  t.equal(req?.headers.authorization, `Bearer ${CANARY}`, 'the server received the token');
  t.equal(req?.headers.accept, 'application/vnd.github+json');
  t.equal(req?.headers['user-agent'], 'tyrum-github-issues');
  t.equal(req?.headers['x-github-api-version'], '2022-11-28');
  t.equal(egressSeen.length, egressBefore + 1);
  const asked = egressSeen[egressBefore];
  t.equal(asked?.headers['Authorization'], 'Bearer {{secret:GITHUB_TOKEN}}', 'the plugin sent the template, never a value');
  t.equal(asked?.body, null, 'no body on a GET');
  t.notOk(JSON.stringify(egressSeen).includes(CANARY), 'nothing the plugin handed to egress holds the token');
});

t.test('list_issues: state, per_page and page reach the query; an empty repository lists nothing', async (t) => {
  const before = seen.length;
  const all = await call('list_issues', { owner: 'octo', repo: 'hello', state: 'all', per_page: 2, page: 2 });
  t.equal(seen[before]?.url, '/repos/octo/hello/issues?state=all&per_page=2&page=2');
  t.same(issuesOf(all).map((i) => i.number), [3, 2]);
  const closed = await call('list_issues', { owner: 'octo', repo: 'hello', state: 'closed', per_page: 100 });
  t.same(
    issuesOf(closed).map((i) => [i.number, i.state]),
    [
      [5, 'closed'],
      [1, 'closed'],
    ],
  );
  t.same(await call('list_issues', { owner: 'octo', repo: 'empty' }), { issues: [] });
  t.same(issuesOf(await call('list_issues', { owner: 'octo', repo: 'hello', per_page: 1 })).length, 1);
  t.same(await call('list_issues', { owner: 'octo', repo: 'escaped' }), { issues: [{ number: 9, title: 'Té😀', state: 'open', url: 'https://github.example/o/r/issues/9' }] }, 'escaped keys and white space are read as JSON');
});

t.test('list_issues: a full page of large issues, up to the 8 MiB egress budget, is read without building them', async (t) => {
  await ready;
  const r = await pool.call('github-issues', 'list_issues', enc({ owner: 'big-org', repo: 'huge.repo_name', per_page: 100 }));
  const out = JSON.parse(dec(r.output)) as Json;
  t.ok(schemas.get('list_issues')?.output(out));
  t.equal(issuesOf(out).length, 100);
  t.same(issuesOf(out)[0], { number: 100, title: 'Issue 100', state: 'open', url: `${HTML}/big-org/huge.repo_name/issues/100` });
  t.ok(r.usage.egress_bytes > 8_000_000, `a ${r.usage.egress_bytes}-byte response, within the 8 MiB (8,388,608-byte) egress budget`);
  // The body is copied once into linear memory (about 125 pages) and walked in place; only the
  // output is built. (AssemblyScript's allocator grows memory by doubling when it can, so the peak
  // shows up to twice what is live; it falls back to the pages it needs at the cap.)
  t.ok((r.usage.mem_pages_peak ?? Infinity) <= 256, `within the 256-page cap: ${r.usage.mem_pages_peak} pages`);
});

// --- create_issue --------------------------------------------------------------------------------------

t.test('create_issue: POST a JSON body; 201 gives the number and URL, and the issue is listed after', async (t) => {
  const before = seen.length;
  const title = 'New: "quotes" \\ and 😀 and \u2028';
  const body = 'Multi\nline\tbody with {"json": [1, 2]} and é';
  const out = await call('create_issue', { owner: 'octo', repo: 'hello', title, body });
  t.same(out, { number: 100, url: `${HTML}/octo/hello/issues/100` });
  const req = seen[before];
  t.equal(req?.method, 'POST');
  t.equal(req?.url, '/repos/octo/hello/issues');
  t.equal(req?.headers.authorization, `Bearer ${CANARY}`);
  t.match(req?.headers['content-type'], /^application\/json/);
  t.same(JSON.parse(req?.body ?? ''), { title, body }, 'exactly title and body, as JSON');
  const listed = issuesOf(await call('list_issues', { owner: 'octo', repo: 'hello', per_page: 1 }));
  t.same(listed, [{ number: 100, title, state: 'open', url: `${HTML}/octo/hello/issues/100` }]);

  const bare = await call('create_issue', { owner: 'octo', repo: 'hello', title: 'No body' });
  t.equal(bare.number, 101);
  t.same(JSON.parse(seen[seen.length - 1]?.body ?? ''), { title: 'No body' }, 'no body key when none is given');
});

t.test('create_issue: the body may not smuggle a secret template (egress refuses it; nothing is sent)', async (t) => {
  const before = seen.length;
  const e = await failure('create_issue', { owner: 'octo', repo: 'hello', title: 'leak', body: 'token: {{secret:GITHUB_TOKEN}}' });
  t.equal(sandboxReason(e), 'capability_denied');
  t.equal(seen.length, before, 'the server saw nothing');
});

// --- errors --------------------------------------------------------------------------------------------

t.test('non-2xx answers are plugin errors with the status and GitHub\'s message', async (t) => {
  const cases: Array<[Tool, Json, RegExp]> = [
    ['list_issues', { owner: 'octo', repo: 'missing' }, /^plugin reported an error: GitHub API error: HTTP 404 for GET \/repos\/octo\/missing\/issues\?state=open&per_page=30: Not Found \(no such repository, or the token cannot see it\)$/],
    ['create_issue', { owner: 'nobody', repo: 'x', title: 't' }, /GitHub API error: HTTP 404 for POST \/repos\/nobody\/x\/issues: Not Found/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: '   ' }, /GitHub API error: HTTP 422 for POST \/repos\/octo\/hello\/issues: Validation Failed$/],
    ['list_issues', { owner: 'octo', repo: 'boom' }, /GitHub API error: HTTP 500 for GET \/repos\/octo\/boom\/issues\?state=open&per_page=30$/],
  ];
  for (const [tool, args, message] of cases) {
    t.ok(schemas.get(tool)?.input(structuredClone(args)), 'schema-valid input');
    const e = await failure(tool, args);
    t.equal(sandboxReason(e), 'plugin_error', label(args));
    t.match(e.message, message);
  }
  const long = await failure('list_issues', { owner: 'octo', repo: 'long-message' });
  t.match(long.message, /HTTP 403 for GET \/repos\/octo\/long-message\/issues\?state=open&per_page=30: API rate limit exceeded {2}z+…$/, 'one line, cut short');
  t.ok(long.message.length < 500, `${long.message.length} characters`);
});

t.test('a wrong token: 401 "Bad credentials" names the handle to check, never a value', async (t) => {
  await loadBuilt(pool, 'wrong-token', plugin, { config: { base_url: BASE }, hostApi: { egress: standIn(rights, { GITHUB_TOKEN: 'ghp_revoked0000000000' }) } });
  const before = seen.length;
  const e = await failure('list_issues', { owner: 'octo', repo: 'hello' }, 'wrong-token');
  t.equal(sandboxReason(e), 'plugin_error');
  t.match(e.message, /GitHub API error: HTTP 401 for GET \/repos\/octo\/hello\/issues\?state=open&per_page=30: Bad credentials \(check the token stored in the secret handle GITHUB_TOKEN\)/);
  t.equal(seen[before]?.headers.authorization, 'Bearer ghp_revoked0000000000', 'the wrong value went to the server');
  t.notOk(e.message.includes('ghp_revoked'), 'and the error does not repeat it');
});

t.test('responses that are not GitHub\'s shape are plugin errors, not garbage output', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['html', /unexpected response from GitHub to GET \/repos\/octo\/html\/issues\?state=open&per_page=30: the body is not JSON/],
    ['object', /unexpected response from GitHub to GET .*: expected a JSON array of issues/],
    ['no-title', /issue 1 lacks a string "title", "state" or "html_url"/],
    ['float', /an issue has no positive integer "number"/],
  ];
  for (const [repo, message] of cases) {
    const e = await failure('list_issues', { owner: 'octo', repo });
    t.equal(sandboxReason(e), 'plugin_error', repo);
    t.match(e.message, message);
  }
});

t.test('owner and repo can never change the request path: injection is refused before any request', async (t) => {
  const owners = ['../x', 'a/b', '..', '.', '-lead', 'a b', 'a?b', 'a#b', 'a%2fb', 'a\\b', 'x\r\nX-Injected: 1', 'é', 'a'.repeat(40), '', 'a.b', 'a_b'];
  const repoNames = ['../x', 'a/b', '..', '.', 'x/../../admin', 'a?per_page=1', 'a#frag', 'a%2e%2e', 'a b', 'a\tb', 'a\\b', 'r'.repeat(101), '', 'é', 'a:b', 'a@b'];
  const requests = seen.length;
  const egressCalls = egressSeen.length;
  for (const owner of owners) {
    for (const tool of ['list_issues', 'create_issue'] as const) {
      const args = tool === 'list_issues' ? { owner, repo: 'hello' } : { owner, repo: 'hello', title: 't' };
      t.notOk(schemas.get(tool)?.input(structuredClone(args)), `the input schema refuses owner ${label(owner)}`);
      const e = await failure(tool, args);
      t.equal(sandboxReason(e), 'plugin_error');
      t.match(e.message, /^plugin reported an error: invalid input: "owner" must be a GitHub account name/, `${tool}: the plugin refuses owner ${label(owner)}`);
    }
  }
  for (const repo of repoNames) {
    for (const tool of ['list_issues', 'create_issue'] as const) {
      const args = tool === 'list_issues' ? { owner: 'octo', repo } : { owner: 'octo', repo, title: 't' };
      t.notOk(schemas.get(tool)?.input(structuredClone(args)), `the input schema refuses repo ${label(repo)}`);
      const e = await failure(tool, args);
      t.match(e.message, /^plugin reported an error: invalid input: "repo" must be a GitHub repository name/, `${tool}: the plugin refuses repo ${label(repo)}`);
    }
  }
  t.equal(egressSeen.length, egressCalls, 'the plugin asked for no request');
  t.equal(seen.length, requests, 'the server saw none');
  // What GitHub allows passes both.
  for (const [owner, repo] of [['a', 'b'], ['Octo-Cat-1', '.github'], ['x'.repeat(39), 'my_repo.js-2'], ['octo', '...']]) {
    t.ok(schemas.get('list_issues')?.input({ owner, repo }), `schema accepts ${owner}/${repo}`);
  }
});

t.test('other bad input is a plugin error naming the argument', async (t) => {
  const cases: Array<[Tool, unknown, RegExp]> = [
    ['list_issues', { owner: 'octo', repo: 'hello', state: 'merged' }, /"state" must be "open", "closed" or "all"/],
    ['list_issues', { owner: 'octo', repo: 'hello', per_page: 0 }, /"per_page" must be an integer from 1 to 100/],
    ['list_issues', { owner: 'octo', repo: 'hello', per_page: 101 }, /"per_page" must be an integer from 1 to 100/],
    ['list_issues', { owner: 'octo', repo: 'hello', per_page: 2.5 }, /"per_page" must be an integer/],
    ['list_issues', { owner: 'octo', repo: 'hello', per_page: '10' }, /"per_page" must be an integer from 1 to 100, got a string/],
    ['list_issues', { owner: 'octo', repo: 'hello', page: 0 }, /"page" must be an integer from 1 to 1000/],
    ['list_issues', { owner: 'octo', repo: 'hello', url: 'http://evil.example' }, /unknown key "url"/],
    ['list_issues', { repo: 'hello' }, /"owner" is required/],
    ['list_issues', { owner: 'octo' }, /"repo" is required/],
    ['list_issues', [], /expected a JSON object/],
    ['create_issue', { owner: 'octo', repo: 'hello' }, /"title" is required/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: '' }, /"title" must be 1 to 256 characters/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: '😀'.repeat(257) }, /"title" must be 1 to 256 characters/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: 't', body: 'b'.repeat(65537) }, /"body" must be at most 65536 characters/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: 't', body: null }, /"body" must be a string, got null/],
    ['create_issue', { owner: 'octo', repo: 'hello', title: 't', labels: ['bug'] }, /unknown key "labels"/],
  ];
  const requests = seen.length;
  for (const [tool, input, message] of cases) {
    t.notOk(schemas.get(tool)?.input(structuredClone(input)), `the input schema refuses ${label(input).slice(0, 80)}`);
    const e = await failure(tool, input);
    t.equal(sandboxReason(e), 'plugin_error');
    t.match(e.message, /^plugin reported an error: invalid input: /);
    t.match(e.message, message);
  }
  t.equal(seen.length, requests, 'no request was made');
  // 256 astral characters are 256 characters (512 UTF-16 units), as the schema counts them.
  const out = await call('create_issue', { owner: 'octo', repo: 'hello', title: '😀'.repeat(256), body: 'b'.repeat(65536) });
  t.ok((out.number as number) > 100);
});

t.test('configuration: GitHub Enterprise base paths work; bad settings are plugin errors naming them', async (t) => {
  await loadBuilt(pool, 'ghes', plugin, { config: { base_url: `${BASE}/api/v3/`, token_handle: 'GITHUB_TOKEN' }, hostApi: { egress } });
  const before = seen.length;
  t.equal(issuesOf(await call('list_issues', { owner: 'octo', repo: 'hello', per_page: 1 }, 'ghes')).length, 1);
  t.equal(seen[before]?.url, '/api/v3/repos/octo/hello/issues?state=open&per_page=1', 'base path kept, trailing slash not doubled');

  const load = (key: string, config: Record<string, string>) => loadBuilt(pool, key, plugin, { config, hostApi: { egress } });
  await load('bad-base', { base_url: 'file:///etc/passwd' });
  t.match((await failure('list_issues', { owner: 'o', repo: 'r' }, 'bad-base')).message, /plugin reported an error: configuration: base_url must start with https:\/\/ or http:\/\//);
  await load('userinfo', { base_url: `http://user@127.0.0.1:${port}` });
  t.match((await failure('list_issues', { owner: 'o', repo: 'r' }, 'userinfo')).message, /configuration: base_url must not contain user info/);
  await load('query', { base_url: `${BASE}/?x=1` });
  t.match((await failure('list_issues', { owner: 'o', repo: 'r' }, 'query')).message, /configuration: base_url must not contain a query or fragment/);
  await load('bad-handle', { base_url: BASE, token_handle: 'X}}{{secret:OTHER' });
  t.match((await failure('create_issue', { owner: 'o', repo: 'r', title: 't' }, 'bad-handle')).message, /configuration: token_handle must be a secret handle name/);
  t.equal(seen.length, before + 1, 'none of these made a request');
});

t.test('the operator names the host: anything else is refused by egress, and the token goes nowhere else', async (t) => {
  const requests = seen.length;
  // No config: the default base_url, https://api.github.com, is not in this test's grant.
  await loadBuilt(pool, 'default-host', plugin, { hostApi: { egress } });
  const e1 = await failure('list_issues', { owner: 'octo', repo: 'hello' }, 'default-host');
  t.equal(sandboxReason(e1), 'capability_denied');
  t.match(e1.message, 'egress to GET https://api.github.com is not granted');
  t.equal(egressSeen[egressSeen.length - 1]?.url, 'https://api.github.com/repos/octo/hello/issues?state=open&per_page=30', 'the default API root');
  // A host the grant does not name.
  await loadBuilt(pool, 'other-host', plugin, { config: { base_url: `http://127.0.0.2:${port}` }, hostApi: { egress } });
  t.equal(sandboxReason(await failure('list_issues', { owner: 'octo', repo: 'hello' }, 'other-host')), 'capability_denied');
  // Egress granted to the host, but the secret bound elsewhere.
  const elsewhere = effectiveRights(plugin.manifest, { ...GRANT, secrets: [{ name: 'GITHUB_TOKEN', destinations: ['api.github.com'] }] });
  await loadBuilt(pool, 'secret-elsewhere', plugin, { config: { base_url: BASE }, hostApi: { egress: standIn(elsewhere, { GITHUB_TOKEN: CANARY }) } });
  const e3 = await failure('create_issue', { owner: 'octo', repo: 'hello', title: 't' }, 'secret-elsewhere');
  t.equal(sandboxReason(e3), 'capability_denied');
  t.match(e3.message, 'secret handle GITHUB_TOKEN may not be sent to 127.0.0.1');
  // GET granted, POST not: list works, create is refused.
  const readOnly = effectiveRights(plugin.manifest, { ...GRANT, egress: [{ host: '127.0.0.1', scheme: 'http', port, methods: ['GET'] }] });
  await loadBuilt(pool, 'get-only', plugin, { config: { base_url: BASE }, hostApi: { egress: standIn(readOnly, { GITHUB_TOKEN: CANARY }) } });
  const listed = await call('list_issues', { owner: 'octo', repo: 'empty' }, 'get-only');
  t.same(listed, { issues: [] });
  t.match((await failure('create_issue', { owner: 'octo', repo: 'hello', title: 't' }, 'get-only')).message, 'egress to POST http://127.0.0.1');
  // No egress at all.
  await loadBuilt(pool, 'no-egress', plugin, { config: { base_url: BASE } });
  t.match((await failure('list_issues', { owner: 'octo', repo: 'hello' }, 'no-egress')).message, 'not granted HTTP egress');
  t.equal(seen.length, requests + 1, 'only the granted GET reached the server');
});

t.test('many calls: memory is stable (each call starts from a collected heap)', async (t) => {
  const pages: number[] = [];
  for (let i = 0; i < 120; i++) {
    const r = await pool.call('github-issues', 'list_issues', enc({ owner: 'octo', repo: 'hello', state: 'all', per_page: 1 + (i % 5) }));
    pages.push(r.usage.mem_pages_peak ?? -1);
  }
  t.equal(Math.max(...pages.slice(10)), Math.min(...pages.slice(10)), `memory stable at ${pages[pages.length - 1]} pages`);
});

// --- with the gateway's real egress --------------------------------------------------------------------

t.test("with the gateway's real egress and secret store: installed grant, token injected, redacted on the way back", async (t) => {
  const dir = t.testdir();
  const store = openStore(join(dir, 'tyrum.db'));
  t.teardown(() => store.close());
  const secrets = new SecretStore(store, loadSecretKey(dir, {}));
  // The local API speaks plain http: the real egress needs its origin named in the handle's binding
  // and the grant (a bare host means https on port 443 only).
  secrets.set('GITHUB_TOKEN', new TextEncoder().encode(CANARY), [BASE]);
  const realRights = effectiveRights(plugin.manifest, { ...GRANT, secrets: [{ name: 'GITHUB_TOKEN', destinations: [BASE] }] });
  const records: EgressRecord[] = [];
  const real = createEgressHandler({
    rightsFor: (key) => (key.startsWith('real') ? realRights : null),
    secrets,
    redactor: Redactor.fromSecrets(secrets),
    onEgress: (r) => records.push(r),
  });
  await loadBuilt(pool, 'real', plugin, { config: { base_url: BASE }, hostApi: { egress: real } });

  const before = seen.length;
  const listed = await call('list_issues', { owner: 'octo', repo: 'hello', state: 'all', per_page: 3 }, 'real');
  const numbers = issuesOf(listed).map((i) => i.number as number);
  t.equal(numbers.length, 3);
  t.same(numbers, [...numbers].sort((a, b) => b - a), 'newest first');
  t.equal(seen[before]?.headers.authorization, `Bearer ${CANARY}`, 'the real egress injected the token');
  t.same(records[records.length - 1]?.secrets, ['GITHUB_TOKEN'], 'and recorded the handle, not the value');

  // A server that echoes the token back: the gateway redacts it before the plugin sees the body.
  const created = await call('create_issue', { owner: 'octo', repo: 'hello', title: 'echo' }, 'real');
  t.ok((created.number as number) > 0);
  repos.get('octo/hello')?.push({ number: 999, title: `token is ${CANARY}`, state: 'open', body: null });
  const echoed = issuesOf(await call('list_issues', { owner: 'octo', repo: 'hello', per_page: 1 }, 'real'));
  t.equal(echoed[0]?.number, 999);
  t.notOk(String(echoed[0]?.title).includes(CANARY), `redacted: ${label(echoed[0]?.title)}`);

  // A secret template in the body is refused by the real egress too, before any connection.
  const sentBefore = seen.length;
  const smuggled = await failure('create_issue', { owner: 'octo', repo: 'hello', title: 'leak', body: '{{secret:GITHUB_TOKEN}}' }, 'real');
  t.equal(sandboxReason(smuggled), 'capability_denied');
  t.equal(seen.length, sentBefore, 'the server saw nothing');

  // A base_url the grant does not name: refused before any connection.
  await loadBuilt(pool, 'real-other', plugin, { config: { base_url: 'https://api.github.com' }, hostApi: { egress: real } });
  const denied = await failure('list_issues', { owner: 'octo', repo: 'hello' }, 'real-other');
  t.equal(sandboxReason(denied), 'capability_denied');
  t.notOk(JSON.stringify(records).includes(CANARY), 'no egress record holds the token');
});
