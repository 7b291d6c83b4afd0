import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { AmbientSource, Peer } from '../sources/source.ts';

// What guestlist counts anonymous requests by (rate limits, unfinished sign-ins): the network
// a request comes from, not its address. One subscriber gets a whole IPv6 /64 and can rotate
// through it freely, so a /64 is one network; an IPv4 address is one. Behind `tailscale serve`
// or userspace tailscaled every peer is 127.0.0.1, so there the verified tailnet device (or the
// Funnel client's address, as Serve reports it) is the network instead of one shared bucket.

const peers = new WeakMap<IncomingMessage, Peer>();

/** The TCP peer of a request, the same object for every part of guestlist that asks. */
export function peerOf(req: IncomingMessage): Peer {
  let peer = peers.get(req);
  if (!peer) {
    peer = { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0, headers: req.headers };
    peers.set(req, peer);
  }
  return peer;
}

/** An IPv4 address as it is, an IPv6 address as its /64 (`2001:db8:1:2::/64`). */
export function networkOf(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  const ip = address.replace(/%.*$/, ''); // a link-local zone is not part of the address
  if (isIP(ip) !== 6) return address;
  return `${expandIPv6(ip).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(ip: string): string[] {
  const [head, tail] = ip.includes('::') ? ip.split('::') as [string, string] : [ip, undefined];
  const part = (s: string | undefined) => (s ? s.split(':') : []).flatMap((g) => {
    // An embedded IPv4 tail (::1.2.3.4) is two groups.
    if (!g.includes('.')) return [g];
    const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
    return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  });
  const left = part(head);
  const right = part(tail);
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.map((g) => parseInt(g, 16).toString(16));
}

export type ClientNetwork = (req: IncomingMessage) => Promise<string>;

/**
 * The network of a request: from `client_ip_header` when the operator's proxy sets it, else the
 * TCP peer; a loopback peer is asked of the ambient sources, which may know who is behind it.
 */
export function clientNetwork(clientIpHeader: string | undefined, ambient: AmbientSource[]): ClientNetwork {
  const header = clientIpHeader?.toLowerCase();
  const find = async (req: IncomingMessage): Promise<string> => {
    if (header) {
      const value = String(req.headers[header] ?? '').split(',')[0]!.trim();
      if (isIP(value)) return networkOf(value);
    }
    const peer = peerOf(req);
    for (const source of ambient) {
      const key = await source.network?.(peer);
      if (key) return isIP(key) ? networkOf(key) : key;
    }
    return networkOf(peer.address || 'unknown');
  };
  // Asked by the rate limits, the pending sign-ins and a source's steps for one request: found once.
  const known = new WeakMap<IncomingMessage, Promise<string>>();
  return (req) => {
    let network = known.get(req);
    if (!network) {
      network = find(req);
      known.set(req, network);
    }
    return network;
  };
}
