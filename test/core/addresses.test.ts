import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientNetwork, internalRange } from '../../src/core/addresses.ts';

describe('the network a per-address limit counts as one client', () => {
  it('keeps an IPv4 address exactly', () => {
    for (const address of ['192.0.2.1', '192.0.2.2', '10.0.0.0', '255.255.255.255', '127.0.0.1']) assert.equal(clientNetwork(address), address);
  });

  it('counts an IPv6 address by its /64 prefix, however it is written', () => {
    const cases: [string, string][] = [
      ['2001:db8:0:1:aaaa:bbbb:cccc:dddd', '2001:db8:0:1::/64'],
      ['2001:0db8:0000:0001:0000:0000:0000:0001', '2001:db8:0:1::/64'],
      ['2001:DB8:0:1::1', '2001:db8:0:1::/64'],
      ['2001:db8::1:0:0:1', '2001:db8:0:0::/64'],
      ['2001:db8:0:0:1::1', '2001:db8:0:0::/64'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:db8:1:2::', '2001:db8:1:2::/64'],
      ['2001:db8:1::2', '2001:db8:1:0::/64'],
      ['::2001:db8:1:2:3', '0:0:0:2001::/64'],
      ['::1', '0:0:0:0::/64'],
      ['::', '0:0:0:0::/64'],
      ['fe80::1', 'fe80:0:0:0::/64'],
      ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ];
    for (const [address, network] of cases) assert.equal(clientNetwork(address), network, address);
  });

  it('gives every address of one /64 the same network, and neighbouring /64s different ones', () => {
    const oneHost = ['2001:db8:aa:bb::1', '2001:db8:aa:bb::2', '2001:db8:aa:bb:ffff:ffff:ffff:ffff', '2001:0db8:00aa:00bb:1234::'];
    assert.equal(new Set(oneHost.map(clientNetwork)).size, 1);
    assert.notEqual(clientNetwork('2001:db8:aa:bb::1'), clientNetwork('2001:db8:aa:bc::1'));
    assert.notEqual(clientNetwork('2001:db8::1:0:0:0'), clientNetwork('2001:db8:0:1::'), 'the groups a :: stands for are counted where it stands');
  });

  it('counts an IPv4-mapped IPv6 address as its IPv4 address', () => {
    assert.equal(clientNetwork('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(clientNetwork('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(clientNetwork('::ffff:c000:201'), '192.0.2.1');
    assert.equal(clientNetwork('0:0:0:0:0:ffff:127.0.0.1'), '127.0.0.1');
    assert.notEqual(clientNetwork('::ffff:192.0.2.1'), clientNetwork('::ffff:192.0.2.2'), 'exactly, as IPv4 is');
  });

  it('ignores a zone id', () => {
    assert.equal(clientNetwork('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(clientNetwork('fe80::abcd:1%2'), 'fe80:0:0:0::/64');
  });

  it('returns anything that is not an IP address unchanged', () => {
    for (const garbage of ['', 'unknown', 'localhost', '1.2.3', '256.1.1.1', '1::2::3', ':::', '2001:db8:1:2:3:4:5:6:7', 'gggg::1', '::ffff:999.0.0.1', '%eth0', '::1%', 'a:b', '12345::', '192.0.2.1:8080', '[2001:db8::1]']) {
      assert.equal(clientNetwork(garbage), garbage, JSON.stringify(garbage));
    }
  });
});

describe('the internal range of an address (where a developer’s back-channel logout URI may not point)', () => {
  it('names the range of an address on the server’s own host or network, IPv4 and IPv6, with or without brackets', () => {
    const cases: [string, string][] = [
      ['0.0.0.0', 'this host'],
      ['127.0.0.1', 'loopback'],
      ['127.255.255.254', 'loopback'],
      ['10.0.0.1', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.0.1', 'private'],
      ['100.64.0.1', 'shared'],
      ['100.127.255.255', 'shared'],
      ['169.254.169.254', 'link-local'],
      ['::', 'this host'],
      ['::1', 'loopback'],
      ['[::1]', 'loopback'],
      ['0:0:0:0:0:0:0:1', 'loopback'],
      ['fe80::1', 'link-local'],
      ['febf::1', 'link-local'],
      ['fe80::1%eth0', 'link-local'],
      ['fc00::1', 'unique-local'],
      ['[fdff:ffff::1]', 'unique-local'],
      ['fec0::1', 'site-local'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['[::ffff:7f00:1]', 'loopback'],
      ['::ffff:10.0.0.1', 'private'],
      ['::ffff:a9fe:a9fe', 'link-local'],
      ['::127.0.0.1', 'loopback'],
      ['64:ff9b::192.168.0.1', 'private'],
      // Oracle Cloud's metadata service, and DS-Lite's tunnel ends (RFC 6890 §2.2.2, RFC 6333 §5.7).
      ['192.0.0.192', 'special-purpose'],
      ['192.0.0.1', 'special-purpose'],
      ['198.18.0.1', 'special-purpose'],
      ['198.19.255.255', 'special-purpose'],
      ['240.0.0.1', 'reserved'],
      ['255.255.255.255', 'reserved'],
      ['[::ffff:c000:c0]', 'special-purpose'],
      // RFC 8215: a NAT64 prefix for the operator's own translator.
      ['64:ff9b:1::10.0.0.1', 'private'],
      ['[64:ff9b:1::a9fe:a9fe]', 'link-local'],
    ];
    for (const [address, range] of cases) assert.equal(internalRange(address), range, address);
  });

  // The IANA IPv4 and IPv6 Special-Purpose Address Registries, each range that is not globally
  // reachable, at its first and last address; multicast; and every IPv6 address outside 2000::/3.
  it('names every special-purpose range that is not globally reachable, multicast, and reserved IPv6 space', () => {
    const cases: [string, string][] = [
      ['0.255.255.255', 'this host'],
      ['10.255.255.255', 'private'],
      ['127.0.0.0', 'loopback'],
      ['169.254.0.0', 'link-local'],
      ['172.16.0.0', 'private'],
      ['192.0.0.0', 'special-purpose'],
      ['192.0.0.255', 'special-purpose'],
      ['192.168.255.255', 'private'],
      ['198.18.0.0', 'special-purpose'],
      // The deprecated 6to4 relay anycast (RFC 7526).
      ['192.88.99.0', 'special-purpose'],
      ['192.88.99.255', 'special-purpose'],
      // Documentation: TEST-NET-1, -2 and -3 (RFC 5737), 2001:db8::/32 (RFC 3849) and 3fff::/20 (RFC 9637).
      ['192.0.2.0', 'documentation'],
      ['192.0.2.255', 'documentation'],
      ['198.51.100.1', 'documentation'],
      ['198.51.100.255', 'documentation'],
      ['203.0.113.0', 'documentation'],
      ['203.0.113.255', 'documentation'],
      ['2001:db8::1', 'documentation'],
      ['[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]', 'documentation'],
      ['3fff::', 'documentation'],
      ['3fff:fff:ffff::1', 'documentation'],
      // Multicast (RFC 5771, RFC 4291 §2.7).
      ['224.0.0.0', 'multicast'],
      ['224.0.0.251', 'multicast'],
      ['239.255.255.255', 'multicast'],
      ['ff02::1', 'multicast'],
      ['[ff05::1:3]', 'multicast'],
      ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
      ['::ffff:224.0.0.1', 'multicast'],
      ['240.0.0.0', 'reserved'],
      ['fe80::', 'link-local'],
      ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link-local'],
      ['fc00::', 'unique-local'],
      ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local'],
      // 2001::/23, IETF protocol assignments (RFC 2928): Teredo's 2001::/32 (RFC 4380), benchmarking's 2001:2::/48 (RFC 5180), ORCHID.
      ['2001::1', 'special-purpose'],
      ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'special-purpose'],
      ['2001:2::1', 'special-purpose'],
      ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'special-purpose'],
      // Outside 2000::/3, global unicast, IPv6 is reserved or unassigned (RFC 4291 §2.4): the discard-only
      // 100::/64 (RFC 6666), SRv6's 5f00::/16 (RFC 9602), the rest of 64:ff9b::/32 and of ::/8.
      ['100::1', 'reserved'],
      ['5f00::1', 'reserved'],
      ['::2:0:0:1', 'reserved'],
      ['1fff:ffff::1', 'reserved'],
      ['4000::1', 'reserved'],
      ['fbff::1', 'reserved'],
      ['fe00::1', 'reserved'],
      ['64:ff9b:2::10.0.0.1', 'reserved'],
      ['64:ff9b:0:1::8.8.8.8', 'reserved'],
    ];
    for (const [address, range] of cases) assert.equal(internalRange(address), range, address);
  });

  it('judges an IPv6 address that carries an IPv4 one by that IPv4 address, wherever it carries it', () => {
    const cases: [string, string | undefined][] = [
      // IPv4-translated (SIIT, RFC 2765 §2.1, RFC 6145): ::ffff:0:a.b.c.d.
      ['::ffff:0:10.0.0.1', 'private'],
      ['[::ffff:0:7f00:1]', 'loopback'],
      ['::ffff:0:169.254.169.254', 'link-local'],
      ['::ffff:0:8.8.8.8', undefined],
      // IPv4-compatible (RFC 4291 §2.5.5.1) and IPv4-mapped (§2.5.5.2).
      ['::10.1.2.3', 'private'],
      ['::0.0.0.2', 'this host'],
      ['::8.8.8.8', undefined],
      ['::ffff:192.0.2.1', 'documentation'],
      // NAT64's well-known prefix (RFC 6052 §2.1).
      ['64:ff9b::7f00:1', 'loopback'],
      ['64:ff9b::100.64.0.1', 'shared'],
      ['64:ff9b::1.1.1.1', undefined],
      // The local-use 64:ff9b:1::/48 (RFC 8215): its first /96 is read so by every translator;
      // elsewhere the IPv4 address sits where the translator's prefix length puts it (RFC 6052 §2.2).
      ['64:ff9b:1::7f00:1', 'loopback'],
      ['64:ff9b:1::8.8.8.8', undefined],
      ['64:ff9b:1:1:a:0:100:0', 'special-purpose'],
      ['64:ff9b:1:c0a8:0:100::', 'special-purpose'],
      ['64:ff9b:1:0:0:1:808:808', 'special-purpose'],
      ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', 'special-purpose'],
      // 6to4 (RFC 3056 §2): 2002:a.b.c.d::/48 is the site behind IPv4 address a.b.c.d.
      ['2002:a00:1::1', 'private'],
      ['[2002:7f00:1::]', 'loopback'],
      ['2002:a9fe:a9fe::1', 'link-local'],
      ['2002:c0a8:101:1::1', 'private'],
      ['2002:6440:1::', 'shared'],
      ['2002:e000:1::', 'multicast'],
      ['2002:808:808::1', undefined],
      ['2002:102:304:5::6', undefined],
    ];
    for (const [address, range] of cases) assert.equal(internalRange(address), range, address);
  });

  it('leaves public addresses, the neighbours of each range, and anything that is not an address alone', () => {
    const outside = [
      '1.1.1.1', '9.255.255.255', '11.0.0.0', '100.63.255.255', '100.128.0.0', '126.255.255.255', '128.0.0.0', '169.253.255.255', '169.255.0.0', '172.15.255.255', '172.32.0.0',
      '192.167.255.255', '192.169.0.0', '191.255.255.255', '192.0.1.0', '192.0.1.255', '192.0.3.0', '198.17.255.255', '198.20.0.0', '198.51.99.255', '198.51.101.0', '203.0.112.255', '203.0.114.0', '223.255.255.255',
      '2000::1', '2001:200::1', '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db9::1', '2003::1', '2620:4f:8000::1', '3ffe:ffff::1', '3fff:1000::1', '[2606:4700::1111]', '2a00:1450:4001:82a::200e',
      '64:ff9b:1::8.8.8.8', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8',
      'localhost', 'example.com', '', '[]', '2002::1::1', '::ffff:0:999.0.0.1',
    ];
    for (const address of outside) assert.equal(internalRange(address), undefined, address);
  });
});
