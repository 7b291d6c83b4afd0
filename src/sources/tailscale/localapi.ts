import { Agent, request } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';

// A client for the two tailscaled LocalAPI calls guestlist makes: whois, and status for the
// console. It speaks exactly what tailscaled expects (tailscale/tailscale ipn/localapi/localapi.go,
// serveWhoIs): HTTP/1.1 over the unix socket, `Host: local-tailscaled.sock` (Node would send
// "localhost", which tailscaled refuses), no Origin or Referer, and the address as `ip:port` with
// IPv6 in brackets.

export interface WhoisResponse {
  Node: {
    ID: string;
    StableID: string;
    Name: string;
    ComputedName?: string;
    Tags?: string[];
    Hostinfo?: { Hostname?: string; ShareeNode?: boolean };
  };
  UserProfile: {
    /** Decimal string: Tailscale user ids can exceed 2^53 and must survive exactly. */
    ID: string;
    LoginName: string;
    DisplayName?: string;
    ProfilePicURL?: string;
  };
}

/** tailscaled could not be asked, or gave an answer that is not a whois response. */
export class TailscaledUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TailscaledUnavailable';
  }
}

/** The `addr` tailscaled wants for a TCP peer: IPv4-mapped IPv6 unmapped, IPv6 bracketed. */
export function whoisAddress(address: string, port: number): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped?.[1] ?? address;
  if (isIPv6(ip)) return port ? `[${ip}]:${port}` : ip;
  if (isIPv4(ip)) return port ? `${ip}:${port}` : ip;
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

const MAX_RESPONSE_BYTES = 256 * 1024;
// One kept-alive connection pool to tailscaled: a zero-click login is a whois, and opening a new
// connection for each was a good part of its cost. As many may stay open idle as may be in use:
// with fewer, a burst of sign-ins kept closing and reopening them (half of whois's CPU in a profile).
const agent = new Agent({ keepAlive: true, maxSockets: 32, maxFreeSockets: 32, timeout: 30_000 });
const ID_KEYS = new Set(['ID', 'User', 'Sharer']);

/**
 * Ask tailscaled who is behind `addr`. Resolves to undefined when tailscaled knows no such peer
 * (its 404 "no match for IP:port"), and throws TailscaledUnavailable for anything else that fails.
 */
export async function whois(socketPath: string, addr: string, timeoutMs = 3000): Promise<WhoisResponse | undefined> {
  const { status, body } = await localGet(socketPath, `/localapi/v0/whois?addr=${encodeURIComponent(addr)}`, 'whois', timeoutMs);
  if (status === 404 && /no match/i.test(body)) return undefined;
  if (status !== 200) throw new TailscaledUnavailable(`tailscaled answered whois with HTTP ${status}: ${body.trim().slice(0, 200)}`);
  return parseWhois(body);
}

/** What `tailscale status` says of this node, as much as the console shows. */
export interface NodeStatus {
  /** "Running" when it is up and logged in; "NeedsLogin", "Stopped", "Starting" otherwise. */
  backendState: string;
  /** The tailnet's name (an email domain, a GitHub org, "example.com"). */
  tailnet?: string;
  version?: string;
}

/** tailscaled's own state (GET /localapi/v0/status), for the console's health. */
export async function status(socketPath: string, timeoutMs = 3000): Promise<NodeStatus> {
  // Without its peers (what `tailscale status --peers=false` asks): a big tailnet's list would be
  // far over what is read, and the console needs none of it.
  const { status: code, body } = await localGet(socketPath, '/localapi/v0/status?peers=false', 'status', timeoutMs);
  if (code !== 200) throw new TailscaledUnavailable(`tailscaled answered status with HTTP ${code}: ${body.trim().slice(0, 200)}`);
  let value: { BackendState?: unknown; CurrentTailnet?: { Name?: unknown } | null; Version?: unknown };
  try {
    value = JSON.parse(body);
  } catch {
    throw new TailscaledUnavailable('tailscaled answered status with something that is not JSON');
  }
  if (typeof value?.BackendState !== 'string') throw new TailscaledUnavailable('tailscaled answered status without a BackendState');
  const tailnet = value.CurrentTailnet?.Name;
  return {
    backendState: value.BackendState,
    ...(typeof tailnet === 'string' && tailnet ? { tailnet } : {}),
    ...(typeof value.Version === 'string' ? { version: value.Version } : {}),
  };
}

/** One GET to the LocalAPI: its status and body, or TailscaledUnavailable when it could not be asked. */
function localGet(socketPath: string, path: string, what: string, timeoutMs: number, retried = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, agent, method: 'GET', path, headers: { Host: 'local-tailscaled.sock' }, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new TailscaledUnavailable(`tailscaled sent an oversized ${what} response`));
          } else chunks.push(chunk);
        });
        res.on('error', () => {}); // surfaced through req's error
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new TailscaledUnavailable(`tailscaled did not answer ${what} within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof TailscaledUnavailable) return reject(err);
      // A kept-alive connection that tailscaled closed meanwhile: try once on a fresh one.
      if (req.reusedSocket && err.code === 'ECONNRESET' && !retried) return resolve(localGet(socketPath, path, what, timeoutMs, true));
      const why = err.code === 'ENOENT' ? 'no socket there (is tailscaled running?)'
        : err.code === 'ECONNREFUSED' ? 'connection refused (is tailscaled running?)'
        : err.code === 'EACCES' ? 'permission denied'
        : err.message;
      reject(new TailscaledUnavailable(`cannot reach tailscaled at ${socketPath}: ${why}`));
    });
    req.end();
  });
}

function parseWhois(body: string): WhoisResponse {
  let value: unknown;
  try {
    // The reviver's third argument (Node 22+) carries the literal source text, so ids larger
    // than 2^53 keep every digit instead of being rounded by the float conversion.
    value = JSON.parse(body, (key: string, v: unknown, context?: { source?: string }) =>
      ID_KEYS.has(key) && typeof v === 'number' && context?.source ? context.source : v);
  } catch {
    throw new TailscaledUnavailable('tailscaled answered whois with something that is not JSON');
  }
  const r = value as Partial<WhoisResponse> | null;
  const user = r?.UserProfile;
  const node = r?.Node;
  if (!user || !node || typeof user.ID !== 'string' || typeof user.LoginName !== 'string'
    || typeof node.StableID !== 'string' || (node.Tags !== undefined && !Array.isArray(node.Tags))) {
    throw new TailscaledUnavailable('tailscaled answered whois without the expected Node and UserProfile');
  }
  return r as WhoisResponse;
}
