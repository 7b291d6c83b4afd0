import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TailscaleConfig } from './config.ts';
import { decodeRfc2047 } from './rfc2047.ts';
import { status, TailscaledUnavailable, whois, whoisAddress, type WhoisResponse } from './localapi.ts';
import type { Connection, Peer } from '../../network.ts';
import { Refusal, refusing, type AmbientSource, type Identity } from '../source.ts';

// Zero-click sign-in for people on the tailnet: tailscaled already knows which user owns the
// device at the other end of the TCP connection, so we ask it (whois) and never show a page.

/**
 * tailscaled registers a connection it proxies just after its dial to us completes
 * (tailscale/tailscale#1616), so a whois asked the moment we accept may come before it.
 */
const REGISTRATION_RACE_MS = 25;

/** A loopback connection tailscaled did not know, which its peer had closed by the time we asked. */
const CLOSED_UNKNOWN = 'closed-unknown';

type Answer = WhoisResponse | undefined | typeof CLOSED_UNKNOWN;

export function tailscaleSource(config: TailscaleConfig, whoisTimeoutMs = 3000): AmbientSource {
  // Who is at the other end is asked once per connection, for every request it carries (the rate
  // limits ask who is behind a loopback peer, then the sign-in does), and for a loopback
  // connection the moment it is accepted. tailscaled knows a connection it proxies (userspace
  // networking) only while it lasts, and older versions forgot it as soon as the device closed
  // its side: a device that sent forged Serve headers and half-closed at once looked like Serve
  // by the time its request was read. So the answer is taken when the connection arrives, and a
  // loopback connection tailscaled does not know counts as Serve's only if it is still open then:
  // Serve never closes its side before its answer, and a forwarder that forgets a connection
  // because the device closed it passes that close on to us.
  const byConnection = new WeakMap<Connection, Promise<Answer>>();
  const ask = async (address: string, port: number, connection?: Connection): Promise<Answer> => {
    const first = await whois(config.socket, whoisAddress(address, port), whoisTimeoutMs);
    if (first || !isLoopback(address)) return first;
    await sleep(REGISTRATION_RACE_MS);
    const second = await whois(config.socket, whoisAddress(address, port), whoisTimeoutMs);
    if (second) return second;
    return connection?.readableEnded || connection?.destroyed ? CLOSED_UNKNOWN : undefined;
  };
  const askFor = (connection: Connection, address: string, port: number) => {
    const answer = ask(address, port, connection);
    // tailscaled not answering fails the request that waited for it (closed); the connection's
    // next request asks again (a busy Serve connection may live long), and the closed-peer rule
    // still holds then.
    answer.catch(() => byConnection.delete(connection));
    byConnection.set(connection, answer);
    return answer;
  };
  const lookup = (peer: Peer): Promise<Answer> => {
    if (!peer.connection) return ask(peer.address, peer.port);
    return byConnection.get(peer.connection) ?? askFor(peer.connection, peer.address, peer.port);
  };

  return {
    kind: 'ambient',
    name: 'tailscale',
    label: 'Tailscale',
    // A device is asked again at every authorization, so one removed from the tailnet is out at
    // once; the session only has to outlive the code exchange and the app's userinfo call.
    session: { holdsFor: 15 * 60, verifyAgain: 'from-the-connection' },
    async identify(peer: Peer): Promise<Identity> {
      // tailscaled first, always. With userspace networking every tailnet connection reaches us
      // from 127.0.0.1, just like `tailscale serve`'s own proxy; tailscaled knows the former (its
      // proxy mapper) and not the latter. A connection it knows is that device, whatever
      // Tailscale-User-* headers the device itself sent.
      let who: Answer;
      try {
        who = await lookup(peer);
      } catch (err) {
        if (!(err instanceof TailscaledUnavailable)) throw err;
        throw new Refusal('source-unavailable', 'Tailscale is not answering',
          'guestlist could not ask Tailscale who you are, so it cannot sign you in right now. Try again in a minute; if this keeps happening, tell whoever runs this site.',
          err.message);
      }
      if (who && who !== CLOSED_UNKNOWN) return identityFromWhois(who, config.allow_tagged);
      // A loopback connection tailscaled does not know: `tailscale serve` itself (or another
      // local process, which is why serve_headers also requires a loopback-only listener).
      if (config.serve_headers && isLoopback(peer.address) && who !== CLOSED_UNKNOWN) {
        const fromHeaders = identityFromServeHeaders(peer);
        if (fromHeaders) return fromHeaders;
      }
      throw new Refusal('not-on-tailnet', 'You are not on the tailnet',
        'Sign-in here works only from a device connected to this Tailscale network. Connect Tailscale on this device and try again.',
        `tailscaled does not know ${whoisAddress(peer.address, peer.port)}`);
    },

    async health() {
      const name = 'Tailscale';
      let node;
      try {
        node = await status(config.socket, whoisTimeoutMs);
      } catch (err) {
        return [{ name, ok: false, detail: (err as Error).message }];
      }
      const running = node.backendState === 'Running';
      return [{
        name, ok: running,
        detail: `tailscaled at ${config.socket}${node.version ? ` (${node.version.split('-')[0]})` : ''}: ${running ? 'running' : `${node.backendState}, so it knows no peer`}`
          + `${node.tailnet ? `, tailnet ${node.tailnet}` : ''}${config.serve_headers ? '; tailscale serve\'s identity headers are trusted on loopback' : ''}`,
      }];
    },

    accepted(connection: Connection): void {
      const { remoteAddress: address, remotePort: port } = connection;
      if (address && port && isLoopback(address)) askFor(connection, address, port);
    },

    async network(peer: Peer): Promise<string | undefined> {
      if (!isLoopback(peer.address)) return undefined;
      let who: Answer;
      try {
        who = await lookup(peer);
      } catch {
        return undefined; // the sign-in itself will say Tailscale is not answering
      }
      if (who === CLOSED_UNKNOWN) return undefined;
      if (who) return `tailscale:node:${who.Node.StableID}`;
      if (!config.serve_headers) return undefined;
      if (header(peer, 'tailscale-funnel-request')) {
        // Funnel: Serve sends exactly one X-Forwarded-For, the public client's IP.
        const ip = header(peer, 'x-forwarded-for');
        return ip && isIP(ip) ? ip : undefined;
      }
      const login = header(peer, 'tailscale-user-login');
      return login ? `tailscale:user:${decodeRfc2047(login).toLowerCase()}` : undefined;
    },
  };
}

function identityFromWhois(who: WhoisResponse, allowTagged: boolean): Identity {
  const tags = who.Node.Tags ?? [];
  if (tags.length > 0) {
    const host = who.Node.ComputedName || who.Node.Hostinfo?.Hostname || who.Node.Name.split('.')[0] || who.Node.StableID;
    // All tagged devices share one pseudo-user ("tagged-devices"): a tagged device is a
    // machine, not a person, so it may only sign in when the owner allows it, as itself.
    if (!allowTagged) {
      throw refusing(new Refusal('tagged-device', 'This device is tagged',
        'This device is a tagged Tailscale device, which belongs to the tailnet rather than to a person, so it cannot sign in here.'), `tailscale:node:${who.Node.StableID}`, host);
    }
    return { source: 'tailscale', id: `node:${who.Node.StableID}`, login: host, name: host, emailVerified: false, aliases: tags };
  }
  const user = who.UserProfile;
  const email = looksLikeEmail(user.LoginName) ? user.LoginName : undefined;
  return {
    source: 'tailscale',
    id: user.ID,
    login: user.LoginName,
    ...(user.DisplayName ? { name: user.DisplayName } : {}),
    ...(email ? { email } : {}),
    // The login name is the address the person proved to Tailscale's identity provider when
    // they joined; "alice@github" and "bob@passkey" are not addresses and are not claimed.
    emailVerified: email !== undefined,
    ...(user.ProfilePicURL ? { picture: user.ProfilePicURL } : {}),
    aliases: [user.LoginName],
  };
}

/**
 * Identity from the headers `tailscale serve` adds. Serve strips any the client sent, but only
 * on its own path: anyone who reaches our port another way could forge them, so they count only
 * for a loopback connection that tailscaled does not know (see identify). Serve does not pass
 * the numeric user id, so the login name is the id here.
 */
function identityFromServeHeaders(peer: Peer): Identity | undefined {
  if (header(peer, 'tailscale-funnel-request')) return undefined; // public Funnel traffic: no identity
  const loginRaw = header(peer, 'tailscale-user-login');
  if (!loginRaw) return undefined;
  const login = decodeRfc2047(loginRaw);
  const nameRaw = header(peer, 'tailscale-user-name');
  const picture = header(peer, 'tailscale-user-profile-pic');
  const email = looksLikeEmail(login) ? login : undefined;
  return {
    source: 'tailscale',
    id: login,
    login,
    ...(nameRaw ? { name: decodeRfc2047(nameRaw) } : {}),
    ...(email ? { email } : {}),
    emailVerified: email !== undefined,
    ...(picture && /^https:\/\//.test(picture) ? { picture } : {}),
    aliases: [login],
  };
}

function header(peer: Peer, name: string): string | undefined {
  const v = peer.headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function looksLikeEmail(login: string): boolean {
  return /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(login);
}

export function isLoopback(address: string): boolean {
  return address === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/i.test(address);
}
