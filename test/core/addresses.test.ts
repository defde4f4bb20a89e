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

  it('leaves public addresses, the neighbours of each range, and anything that is not an address alone', () => {
    const outside = ['1.1.1.1', '9.255.255.255', '11.0.0.0', '100.63.255.255', '100.128.0.0', '126.255.255.255', '128.0.0.0', '169.253.255.255', '169.255.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '192.169.0.0', '191.255.255.255', '192.0.1.0', '198.17.255.255', '198.20.0.0', '239.255.255.255', '2001:db8::1', '64:ff9b:1::8.8.8.8', '64:ff9b:2::10.0.0.1', '[2606:4700::1111]', 'fbff::1', 'fe00::1', 'ff02::1', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '::2:0:0:1', 'localhost', 'example.com', '', '[]'];
    for (const address of outside) assert.equal(internalRange(address), undefined, address);
  });
});
