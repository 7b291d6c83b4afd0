import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';

// What guestlist counts anonymous requests by (rate limits, unfinished sign-ins, live Plex PINs
// and Jellyfin codes): the network a request comes from, not its address. An IPv4 address is one
// network. An IPv6 subscriber gets at least a /64, which it can rotate through freely, and usually
// more: providers hand a home a /56 (256 /64s) and a site a /48. So an IPv6 client is counted as
// its /64, and its /56 and /48 are counted too, each with a larger share, so that one subscriber
// cannot take everybody's places by spreading over the /64s it holds.

/** One TCP connection, the same object for every request it carries (a net.Socket). */
export interface Connection {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  /** The peer has closed its side (or the connection is gone). */
  readonly readableEnded?: boolean;
  readonly destroyed?: boolean;
}

/** The network facts of the request being signed in: the TCP peer, never a forwarded header. */
export interface Peer {
  address: string;
  port: number;
  headers: IncomingHttpHeaders;
  /** The connection the request came on; absent where a peer is made up (tests). */
  connection?: Connection;
}

/** Where a request comes from: the network itself, and the wider prefixes it lies in, narrowest first. */
export interface Network {
  name: string;
  wider: string[];
}

/** How many times a network's own share a wider prefix gets: its /56, then its /48. */
export const WIDER_SHARES = [2, 4] as const;

/** One count with its limit, as the store keeps it. */
export interface Share {
  name: string;
  limit: number;
}

/** The network and each wider prefix with its share of `perNetwork` (the network's own). */
export function sharesOf(network: Network, perNetwork: number, label = ''): Share[] {
  const prefix = label ? `${label} ` : '';
  return [
    { name: `${prefix}${network.name}`, limit: perNetwork },
    ...network.wider.map((name, i) => ({ name: `${prefix}${name}`, limit: perNetwork * (WIDER_SHARES[i] ?? WIDER_SHARES.at(-1)!) })),
  ];
}

/** A network named by something other than an address (a tailnet device): no wider prefixes. */
export function namedNetwork(name: string): Network {
  return { name, wider: [] };
}

/** An IPv4 address as itself; an IPv6 address as its /64, within its /56 and /48. */
export function networkOf(address: string): Network {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return namedNetwork(mapped[1]!);
  const ip = address.replace(/%.*$/, ''); // a link-local zone is not part of the address
  if (isIP(ip) !== 6) return namedNetwork(address);
  const groups = expandIPv6(ip);
  return { name: prefix(groups, 64), wider: [prefix(groups, 56), prefix(groups, 48)] };
}

/** `2001:db8:1:2::/64`, `2001:db8:1:200::/56`, `2001:db8:1::/48`: the first `bits` of the address. */
function prefix(groups: number[], bits: 48 | 56 | 64): string {
  const kept = groups.slice(0, 4).map((g, i) => (i < 3 ? g : bits === 64 ? g : bits === 56 ? g & 0xff00 : 0));
  const shown = bits === 48 ? kept.slice(0, 3) : kept;
  return `${shown.map((g) => g.toString(16)).join(':')}::/${bits}`;
}

function expandIPv6(ip: string): number[] {
  const [head, tail] = ip.includes('::') ? ip.split('::') as [string, string] : [ip, undefined];
  const part = (s: string | undefined) => (s ? s.split(':') : []).flatMap((g) => {
    // An embedded IPv4 tail (::1.2.3.4) is two groups.
    if (!g.includes('.')) return [parseInt(g, 16)];
    const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
    return [(a << 8) | b, (c << 8) | d];
  });
  const left = part(head);
  const right = part(tail);
  return tail === undefined ? left : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}
