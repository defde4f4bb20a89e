import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * The part of a client address that per-address limits count as one client: an IPv6 address's /64
 * prefix (as `2001:db8:0:1::/64`), an IPv4 address as it is, an IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`) as its IPv4 address. Anything else is returned unchanged.
 *
 * One host, or one home connection, is given a whole /64 (RFC 6177, RFC 7421): counted address by
 * address, it would have 2^64 budgets of its own.
 */
export function clientNetwork(address: string): string {
  // IPv4 (kept exactly) and anything else without a colon are returned before any parsing: the
  // token endpoint builds a key for every request.
  if (!address.includes(':')) return address;
  // A server listening on `::` sees every IPv4 client this way.
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  if (!isIPv6(address)) return address;
  // A zone id (`fe80::1%eth0`) names the interface, not the address.
  const zone = address.indexOf('%');
  const groups = ipv6Groups(zone === -1 ? address : address.slice(0, zone));
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  const prefix = groups.slice(0, 4).map((group) => group.toString(16));
  return `${prefix.join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (no zone id): `::` expanded, a dotted IPv4 tail made two groups. */
function ipv6Groups(address: string): number[] {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const gap = text.indexOf('::');
  if (gap === -1) return parse(text);
  const head = parse(text.slice(0, gap));
  const rest = parse(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}

/**
 * What an address is that Gatehouse's server must not post to: one that reaches its own host or
 * network, or one where no server on the internet answers.
 */
export type InternalRange =
  | 'this host'
  | 'loopback'
  | 'private'
  | 'shared'
  | 'link-local'
  | 'special-purpose'
  | 'documentation'
  | 'multicast'
  | 'reserved'
  | 'unique-local'
  | 'site-local';

/**
 * Every range of the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) that is not
 * globally reachable, and multicast, which is not in them.
 *
 * IPv4: 0.0.0.0/8 is "this host" (RFC 1122 §3.2.1.3): Linux connects 0.0.0.0 to itself.
 * 100.64.0.0/10 is shared by a carrier's or cloud's NAT (RFC 6598). 169.254.0.0/16 holds the cloud
 * metadata service (169.254.169.254), and 192.0.0.0/24 (IETF protocol assignments, RFC 6890 §2.2.2:
 * DS-Lite's tunnel ends, RFC 6333 §5.7) Oracle Cloud's (192.0.0.192). 192.88.99.0/24 was 6to4's
 * relay anycast, deprecated by RFC 7526 and reachable only as a relay nearby. 198.18.0.0/15 is for
 * benchmarking a network (RFC 2544), TEST-NET-1, -2 and -3 for documentation (RFC 5737),
 * 224.0.0.0/4 multicast (RFC 5771) and 240.0.0.0/4 reserved (RFC 1112 §4), broadcast included.
 *
 * IPv6: 2001::/23 holds IETF protocol assignments (RFC 2928): Teredo's 2001::/32 (RFC 4380: a host
 * behind a NAT, through a relay), benchmarking's 2001:2::/48 (RFC 5180), ORCHID identifiers, and a
 * few anycast services that are no relying party's server either. 2001:db8::/32 (RFC 3849) and
 * 3fff::/20 (RFC 9637) are for documentation; RFC 3879's deprecated site-local fec0::/10 still
 * routes inside a site. Everything outside 2000::/3 and not named here (100::/64, the rest of ::/8,
 * SRv6's 5f00::/16, …) is reserved: RFC 4291 §2.4 and IANA allocate global unicast from 2000::/3 only.
 */
const RANGES: readonly [range: InternalRange, family: 'ipv4' | 'ipv6', subnets: readonly string[]][] = [
  ['this host', 'ipv4', ['0.0.0.0/8']],
  ['private', 'ipv4', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']],
  ['shared', 'ipv4', ['100.64.0.0/10']],
  ['loopback', 'ipv4', ['127.0.0.0/8']],
  ['link-local', 'ipv4', ['169.254.0.0/16']],
  ['special-purpose', 'ipv4', ['192.0.0.0/24', '192.88.99.0/24', '198.18.0.0/15']],
  ['documentation', 'ipv4', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24']],
  ['multicast', 'ipv4', ['224.0.0.0/4']],
  ['reserved', 'ipv4', ['240.0.0.0/4']],
  ['this host', 'ipv6', ['::/128']],
  ['loopback', 'ipv6', ['::1/128']],
  ['special-purpose', 'ipv6', ['64:ff9b:1::/48', '2001::/23']],
  ['documentation', 'ipv6', ['2001:db8::/32', '3fff::/20']],
  ['unique-local', 'ipv6', ['fc00::/7']],
  ['link-local', 'ipv6', ['fe80::/10']],
  ['site-local', 'ipv6', ['fec0::/10']],
  ['multicast', 'ipv6', ['ff00::/8']],
];

const LISTS = RANGES.map(([range, family, subnets]) => {
  const list = new BlockList();
  for (const subnet of subnets) {
    const [network, bits] = subnet.split('/') as [string, string];
    list.addSubnet(network, Number(bits), family);
  }
  return { range, family, list };
});

const listed = (address: string, family: 'ipv4' | 'ipv6'): InternalRange | undefined => LISTS.find((entry) => entry.family === family && entry.list.check(address, family))?.range;

/**
 * The internal range `address` (an IPv4 or IPv6 address, IPv6 with or without brackets) is in, or
 * undefined for one that is not an address or not internal. An IPv6 address that carries an IPv4
 * one where a connection to it goes (see carriedIPv4) is judged by that IPv4 address.
 */
export function internalRange(address: string): InternalRange | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(bare)) return listed(bare, 'ipv4');
  if (!isIPv6(bare)) return undefined;
  const zone = bare.indexOf('%');
  const ipv6 = zone === -1 ? bare : bare.slice(0, zone);
  const groups = ipv6Groups(ipv6);
  const carried = carriedIPv4(groups);
  if (carried !== undefined) return listed(carried, 'ipv4');
  return listed(ipv6, 'ipv6') ?? ((groups[0]! & 0xe000) === 0x2000 ? undefined : 'reserved');
}

/**
 * The IPv4 address an IPv6 address carries where a connection to it reaches that IPv4 address:
 * IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1), IPv4-mapped `::ffff:a.b.c.d` (§2.5.5.2),
 * IPv4-translated `::ffff:0:a.b.c.d` (SIIT, RFC 2765 §2.1), NAT64's well-known prefix
 * `64:ff9b::/96` (RFC 6052 §2.1), and 6to4's `2002:a.b.c.d::/48` (RFC 3056 §2), whose packets go,
 * encapsulated, to a.b.c.d — judged as that address is, it is refused exactly when a.b.c.d would
 * be, where refusing 2002::/16 whole would add nothing but refusing the sites still using 6to4.
 *
 * The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is the operator's own translators', and
 * where its addresses carry the IPv4 one depends on the prefix length they were given (RFC 6052
 * §2.2: /48, /56, /64 or /96), which Gatehouse cannot know: 64:ff9b:1:1:a:0:100:0 reaches 10.0.0.1
 * through a /64 translator, and ends in 1.0.0.0. Only its first /96, 64:ff9b:1::a.b.c.d, is read
 * (as every translator would read a.b.c.d there, or an address in 0.0.0.0/8, which is never
 * forwarded); the rest of the /48, not globally reachable in IANA's registry, is special-purpose.
 */
function carriedIPv4(groups: number[]): string | undefined {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  const ipv4 = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  const upperZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0;
  // :: and ::1 are the unspecified and loopback addresses (§2.5.2, §2.5.3), not IPv4-compatible ones.
  const compatible = upperZero && g4 === 0 && g5 === 0 && (g6 !== 0 || g7 > 1);
  const mappedOrTranslated = upperZero && ((g4 === 0 && g5 === 0xffff) || (g4 === 0xffff && g5 === 0));
  const nat64 = g0 === 0x64 && g1 === 0xff9b && (g2 === 0 || g2 === 1) && g3 === 0 && g4 === 0 && g5 === 0;
  if (compatible || mappedOrTranslated || nat64) return ipv4(g6, g7);
  if (g0 === 0x2002) return ipv4(g1, g2);
  return undefined;
}
