import { isIPv4, isIPv6 } from 'node:net';

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

/** What an address is that reaches the server's own host or network. */
export type InternalRange = 'this host' | 'loopback' | 'private' | 'shared' | 'link-local' | 'special-purpose' | 'reserved' | 'unique-local' | 'site-local';

// IPv4 special-purpose ranges (RFC 6890) that lead into the server's own host or network, never to
// someone else's server on the internet. 0.0.0.0/8 is "this host" (RFC 1122 §3.2.1.3): Linux
// connects 0.0.0.0 to itself. 100.64.0.0/10 is shared by a carrier's or cloud's NAT (RFC 6598).
// 169.254.0.0/16 holds the cloud metadata service (169.254.169.254), and 192.0.0.0/24 (IETF
// protocol assignments, RFC 6890 §2.2.2: DS-Lite's tunnel ends, RFC 6333 §5.7) Oracle Cloud's
// (192.0.0.192). 198.18.0.0/15 is for benchmarking a network (RFC 2544), 240.0.0.0/4 reserved
// (RFC 1112 §4), broadcast included: neither leads to a server on the internet.
const INTERNAL_IPV4: readonly [prefix: number, bits: number, range: InternalRange][] = [
  [0x00000000, 8, 'this host'],
  [0x0a000000, 8, 'private'],
  [0x64400000, 10, 'shared'],
  [0x7f000000, 8, 'loopback'],
  [0xa9fe0000, 16, 'link-local'],
  [0xac100000, 12, 'private'],
  [0xc0000000, 24, 'special-purpose'],
  [0xc0a80000, 16, 'private'],
  [0xc6120000, 15, 'special-purpose'],
  [0xf0000000, 4, 'reserved'],
];

/**
 * The internal range `address` (an IPv4 or IPv6 address, IPv6 with or without brackets) is in, or
 * undefined for one that is not an address or not internal. An IPv6 address that carries an IPv4
 * one — IPv4-mapped (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), IPv4-compatible (::a.b.c.d, §2.5.5.1) or
 * NAT64 (64:ff9b::a.b.c.d, RFC 6052 §2.1, and the local-use 64:ff9b:1::/48 of RFC 8215 §3, as its
 * /96) — is judged by that IPv4 address, which is where a connection to it goes.
 */
export function internalRange(address: string): InternalRange | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(bare)) return internalIPv4(bare);
  if (!isIPv6(bare)) return undefined;
  const zone = bare.indexOf('%');
  const groups = ipv6Groups(zone === -1 ? bare : bare.slice(0, zone));
  const first = groups[0]!;
  const upperZero = groups.slice(0, 5).every((group) => group === 0);
  if (upperZero && groups[5] === 0 && groups[6] === 0 && groups[7]! <= 1) return groups[7] === 1 ? 'loopback' : 'this host';
  const nat64 = first === 0x64 && groups[1] === 0xff9b && (groups[2] === 0 || groups[2] === 1) && groups.slice(3, 6).every((group) => group === 0);
  const carriesIPv4 = (upperZero && (groups[5] === 0xffff || groups[5] === 0)) || nat64;
  if (carriesIPv4) return internalIPv4(`${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`);
  // RFC 4291 §2.5.6 link-local fe80::/10, RFC 4193 unique-local fc00::/7, RFC 3879's deprecated site-local fec0::/10.
  if ((first & 0xffc0) === 0xfe80) return 'link-local';
  if ((first & 0xfe00) === 0xfc00) return 'unique-local';
  if ((first & 0xffc0) === 0xfec0) return 'site-local';
  return undefined;
}

function internalIPv4(address: string): InternalRange | undefined {
  const value = address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
  return INTERNAL_IPV4.find(([prefix, bits]) => Math.floor(value / 2 ** (32 - bits)) === Math.floor(prefix / 2 ** (32 - bits)))?.[2];
}
