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
