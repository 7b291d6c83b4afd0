import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { namedNetwork, networkOf, type Network, type Peer } from '../network.ts';

// The network a request is counted by (see network.ts): from `client_ip_header` when the
// operator's proxy sets it, else the TCP peer. Behind `tailscale serve` or userspace tailscaled
// every peer is 127.0.0.1, so there the verified tailnet device (or the Funnel client's address,
// as Serve reports it) is the network instead of one shared bucket.

const peers = new WeakMap<IncomingMessage, Peer>();

/** The TCP peer of a request, the same object for every part of guestlist that asks. */
export function peerOf(req: IncomingMessage): Peer {
  let peer = peers.get(req);
  if (!peer) {
    peer = { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0, headers: req.headers, connection: req.socket };
    peers.set(req, peer);
  }
  return peer;
}

export type ClientNetwork = (req: IncomingMessage) => Promise<Network>;

/**
 * Who is behind a peer that many people share (loopback, behind tailscaled or `tailscale serve`),
 * as a network name or an address, when something that verified it can tell (server.ts asks the
 * ambient sources); undefined otherwise.
 */
export type Vouch = (peer: Peer) => Promise<string | undefined>;

/**
 * The network of a request: from `client_ip_header` when the operator's proxy sets it, else the
 * TCP peer, unless `vouch` knows who is behind it.
 */
export function clientNetwork(clientIpHeader: string | undefined, vouch: Vouch): ClientNetwork {
  const header = clientIpHeader?.toLowerCase();
  const find = async (req: IncomingMessage): Promise<Network> => {
    if (header) {
      const value = String(req.headers[header] ?? '').split(',')[0]!.trim();
      if (isIP(value)) return networkOf(value);
    }
    const peer = peerOf(req);
    const key = await vouch(peer);
    if (key) return isIP(key) ? networkOf(key) : namedNetwork(key);
    return networkOf(peer.address || 'unknown');
  };
  // Asked by the rate limits, the pending sign-ins and a source's steps for one request: found once.
  const known = new WeakMap<IncomingMessage, Promise<Network>>();
  return (req) => {
    let network = known.get(req);
    if (!network) {
      network = find(req);
      known.set(req, network);
    }
    return network;
  };
}
