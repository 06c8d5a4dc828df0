import t from 'tap';
import fc from 'fast-check';
import { globMatch, globProblem } from '../../../core/policy/glob.js';

t.test('"*" matches any run of characters, the empty run and dots included', async (t) => {
  const table: Array<[string, string, boolean]> = [
    ['*', '', true],
    ['*', 'github.create_issue', true],
    ['github.*', 'github.create_issue', true],
    ['github.*', 'github.', true],
    ['github.*', 'github', false],
    ['github.*', 'githubx.create_issue', false],
    ['*.delete_*', 'fs.delete_file', true],
    ['*.delete_*', 'fs.undelete_file', false],
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'a.b.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'example.com.evil.net', false],
    ['*.example.com', 'evilexample.com', false],
    ['*example.com', 'evilexample.com', true],
    ['api.*.com', 'api.x.y.com', true],
    ['GH_*', 'GH_TOKEN', true],
    ['GH_*', 'GITHUB_TOKEN', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'aXbYcZ', false],
    ['a*b*c', 'acb', false],
    ['*a', 'ba', true],
    ['*a', 'ab', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['a*', 'a', true],
    ['*ab', 'aab', true],
    ['*b*', 'aaa', false],
  ];
  for (const [pattern, value, want] of table) t.equal(globMatch(pattern, value), want, `${pattern} vs ${JSON.stringify(value)}`);
});

t.test('without "*" a pattern is an exact, case-sensitive match', async (t) => {
  t.ok(globMatch('gh.create_issue', 'gh.create_issue'));
  t.notOk(globMatch('gh.create_issue', 'gh.create_issues'));
  t.notOk(globMatch('gh.create_issue', 'gh.create_issu'));
  t.notOk(globMatch('gh.create_issue', 'GH.create_issue'));
  t.notOk(globMatch('', 'x'));
  t.ok(globMatch('', ''));
  t.notOk(globMatch('.', 'x'), '"." is literal, not a regular-expression wildcard');
});

t.test('matching is not exponential on adversarial patterns', async (t) => {
  const start = process.hrtime.bigint();
  const value = 'a'.repeat(5000);
  t.notOk(globMatch('*a*a*a*a*a*a*a*a*a*a*a*a*b', value));
  t.notOk(globMatch('*' + 'a*'.repeat(100) + 'b', value));
  t.ok(Number(process.hrtime.bigint() - start) / 1e6 < 2000, 'well under a second or two');
});

function reference(pattern: string, value: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')).join('[\\s\\S]*') + '$');
  return re.test(value);
}

t.test('property: globMatch agrees with a regular-expression reference on any pattern and value', async (t) => {
  const chars = fc.constantFrom('a', 'b', '.', '*');
  fc.assert(
    fc.property(fc.string({ unit: chars, maxLength: 10 }), fc.string({ unit: fc.constantFrom('a', 'b', '.'), maxLength: 12 }), (p, v) => globMatch(p, v) === reference(p, v)),
    { numRuns: 5000 },
  );
  t.pass('5000 random pairs agree');
});

t.test('globProblem refuses empty patterns, "**", and characters outside each kind\'s alphabet', async (t) => {
  t.equal(globProblem('tools', 'github.*'), null);
  t.equal(globProblem('tools', 'My-Server.getWeather'), null, 'tool globs allow upper case (imported tool names)');
  t.equal(globProblem('plugins', 'git*'), null);
  t.equal(globProblem('egress_hosts', '*.example.com'), null);
  t.equal(globProblem('egress_hosts', '[::1]'), null);
  t.equal(globProblem('secrets', 'GH_*'), null);
  t.equal(globProblem('tools', '*'), null);
  t.match(globProblem('tools', ''), /empty/);
  t.match(globProblem('tools', '**'), /"\*\*" is not supported/);
  t.match(globProblem('tools', 'a.**.b'), /"\*\*" is not supported/);
  t.match(globProblem('tools', 'a b'), /invalid character " "/);
  t.match(globProblem('tools', 'a?b'), /invalid character "\?"/);
  t.match(globProblem('tools', 'a[b]'), /invalid character "\["/);
  t.match(globProblem('plugins', 'Git*'), /invalid character "G"/);
  t.match(globProblem('plugins', 'a.b'), /invalid character "\."/);
  t.match(globProblem('egress_hosts', 'API.example.com'), /invalid character "A".*host patterns are lowercase/);
  t.match(globProblem('egress_hosts', 'example.com/path'), /invalid character "\/"/);
  t.match(globProblem('secrets', 'gh_*'), /invalid character "g"/);
  t.match(globProblem('tools', 'a'.repeat(256)), /longer than 255/);
});
