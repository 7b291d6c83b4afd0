import type { Connection, Peer } from '../network.ts';
import { Refusal, type AmbientSource, type Identity } from '../sources/source.ts';
import { isLoopback } from '../sources/tailscale/tailscale.ts';

// Only for the built-in demo (`npm start` with no config): there is no config key that turns it
// on, and it refuses anyone who is not on this very machine.

const SAMPLE_USER: Identity = {
  source: 'demo',
  id: 'ada',
  login: 'ada@example.com',
  name: 'Ada Lovelace (sample user)',
  email: 'ada@example.com',
  emailVerified: true,
};

/** The local tailscaled when it knows the peer, else the sample user; localhost only. */
export function demoSource(tailscale?: AmbientSource): AmbientSource {
  return {
    kind: 'ambient',
    name: 'demo',
    label: 'the demo',
    // As tailscale's: asked again at every authorization (it may be a tailnet person).
    session: tailscale?.session ?? { holdsFor: 15 * 60, verifyAgain: 'from-the-connection' },
    async identify(peer: Peer): Promise<Identity> {
      if (!isLoopback(peer.address)) {
        throw new Refusal('not-allowed', 'The demo only works on this machine',
          'This is guestlist\'s built-in demo, which signs in a sample user for visitors on localhost only.');
      }
      if (tailscale) {
        try {
          return await tailscale.identify(peer);
        } catch (err) {
          if (!(err instanceof Refusal)) throw err;
          if (err.reason === 'tagged-device') throw err;
        }
      }
      return SAMPLE_USER;
    },
    accepted(connection: Connection): void {
      tailscale?.accepted?.(connection);
    },
  };
}
