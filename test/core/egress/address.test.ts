import t from 'tap';
import { canonicalHost, classifyAddress, parseV6, parseTemplate, looksLikeTemplate } from '../../../core/egress/index.js';

t.test('public addresses are public', async (t) => {
  for (const a of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
    t.equal(classifyAddress(a), null, a);
  }
});

t.test('loopback, private, link-local (metadata), shared, multicast, broadcast and reserved IPv4 are refused', async (t) => {
  const cases: Record<string, string> = {
    '127.0.0.1': 'loopback',
    '127.255.255.254': 'loopback',
    '10.0.0.1': 'private',
    '172.16.0.1': 'private',
    '172.31.255.255': 'private',
    '192.168.1.1': 'private',
    '169.254.169.254': 'link_local',
    '100.64.0.1': 'shared',
    '100.127.255.255': 'shared',
    '0.0.0.0': 'unspecified',
    '0.1.2.3': 'unspecified',
    '224.0.0.251': 'multicast',
    '255.255.255.255': 'broadcast',
    '240.0.0.1': 'reserved',
    '192.0.2.10': 'documentation',
    '198.18.0.1': 'reserved',
  };
  for (const [a, cls] of Object.entries(cases)) t.equal(classifyAddress(a), cls, a);
});

t.test('IPv6 loopback, ULA, link-local, multicast and every IPv6 form wrapping a private IPv4 are refused', async (t) => {
  const cases: Record<string, string> = {
    '::': 'unspecified',
    '::1': 'loopback',
    '[::1]': 'loopback',
    '0:0:0:0:0:0:0:1': 'loopback',
    '::ffff:127.0.0.1': 'loopback',
    '::ffff:7f00:1': 'loopback',
    '[::ffff:127.0.0.1]': 'loopback',
    '::ffff:169.254.169.254': 'link_local',
    '::ffff:0:10.0.0.1': 'private',
    '::127.0.0.1': 'loopback',
    '64:ff9b::127.0.0.1': 'loopback',
    '64:ff9b::a9fe:a9fe': 'link_local',
    '64:ff9b:1::1': 'translation',
    '2002:7f00:1::1': 'loopback',
    '2002:a9fe:a9fe::': 'link_local',
    'fc00::1': 'unique_local',
    'fd00:ec2::254': 'unique_local',
    'fe80::1': 'link_local',
    'fe80::1%eth0': 'link_local',
    'fec0::1': 'site_local',
    'ff02::1': 'multicast',
    '2001:db8::1': 'documentation',
    '2001::1': 'reserved',
    '100::1': 'reserved',
  };
  for (const [a, cls] of Object.entries(cases)) t.equal(classifyAddress(a), cls, a);
  t.equal(classifyAddress('not-an-ip'), 'invalid');
  t.equal(classifyAddress('999.1.1.1'), 'invalid');
});

t.test('IPv6 parsing handles compression and a trailing dotted quad', async (t) => {
  t.same(parseV6('1:2:3:4:5:6:7:8'), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  t.same(parseV6('1::8'), [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
  t.same(parseV6('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
  t.same(parseV6('1:2:3:4:5:6:1.2.3.4'), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4]);
  t.equal(parseV6('1:::2'), null);
  t.equal(parseV6('12345::'), null);
});

t.test('hosts are compared in the URL parser\'s canonical form', async (t) => {
  t.equal(canonicalHost('API.Example.COM'), 'api.example.com');
  t.equal(canonicalHost('[0:0:0:0:0:0:0:1]'), '[::1]');
  t.equal(canonicalHost('::1'), '[::1]');
  t.equal(canonicalHost('127.1'), '127.0.0.1');
  t.equal(canonicalHost(''), null);
});

t.test('secret templates parse only as {{secret:NAME}}', async (t) => {
  t.same(parseTemplate('Bearer {{secret:API_TOKEN}}'), { ok: true, parts: [{ text: 'Bearer ' }, { secret: 'API_TOKEN' }], secrets: ['API_TOKEN'] });
  t.same(parseTemplate('{{secret:A_B}}:{{secret:A_B}}'), { ok: true, parts: [{ secret: 'A_B' }, { text: ':' }, { secret: 'A_B' }], secrets: ['A_B'] });
  t.same(parseTemplate('plain'), { ok: true, parts: [{ text: 'plain' }], secrets: [] });
  t.match(parseTemplate('{{secret:lower}}'), { ok: false, problem: /does not name a valid secret handle/ });
  t.match(parseTemplate('{{ secret:API_TOKEN }}'), { ok: false, problem: /malformed/ });
  t.match(parseTemplate('{{secret:API_TOKEN}'), { ok: false });
  t.ok(looksLikeTemplate('x {{Secret : Y'));
  t.notOk(looksLikeTemplate('{{other}}'));
});
