import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, isIPv4, isIPv6, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';

// A stand-in for tailscaled's LocalAPI that answers whois the way the real one does
// (shared/reference/tailscale-localapi.md, tailscale/tailscale ipn/localapi/localapi.go):
// - HTTP/1.1 on a unix socket; Host must be "local-tailscaled.sock" (or empty), and any request
//   with an Origin or Referer is refused: 403 "invalid localapi request";
// - `addr` is an IP (port 0), IPv4:port, [IPv6]:port or nodekey:...; a missing one is a 400
//   "missing 'addr' parameter", an unparseable one (such as unbracketed IPv6 with a port that
//   is not itself an address) a 400 "invalid 'addr' parameter";
// - IPv4-mapped IPv6 is unmapped (tailscaled >= 1.102);
// - a node address matches whatever the port; otherwise, for a non-zero port, the netstack
//   proxy mapper maps an exact 127.0.0.1:<ephemeral> (userspace networking) to the tailnet peer;
// - no match: 404 text/plain "no match for IP:port"; unknown paths: 404 "404 page not found";
// - success: 200 application/json, tab-indented, with integer ids that may exceed 2^53;
// - GET /localapi/v0/status: ipnstate.Status (BackendState, CurrentTailnet.Name, Self, ...).
//
// It also plays tailscaled's two ways of handing a tailnet connection to a local port:
// - userspace networking (netstack's forwarder, wgengine/netstack): dial the local port from
//   loopback, register the connection's local ip:port for whois *after* the dial and *before*
//   any byte is copied, and unregister it when the connection closes;
// - `tailscale serve` (ipn/ipnlocal/serve.go): an HTTP reverse proxy that deletes any
//   Tailscale-User-* / Tailscale-Funnel-Request headers the client sent, sets them from whois
//   (none for a tagged device; only Tailscale-Funnel-Request for Funnel traffic), sends exactly
//   one X-Forwarded-For (the client's IP), and registers nothing: whois does not know its
//   connections to the backend.

export interface FakeUser {
  id: string; // decimal, may exceed 2^53
  login: string;
  displayName: string;
  profilePic?: string;
}

export interface FakeDevice {
  nodeId: string;
  stableId: string;
  hostname: string;
  addresses: string[]; // bare IPs
  nodeKey: string;
  user: FakeUser;
  tags?: string[];
}

export type Fault = 'none' | 'hang' | 'http-500' | 'garbage';

export const ALICE: FakeDevice = {
  nodeId: '4937112233445566',
  stableId: 'nQRJBE7CNTRL',
  hostname: 'alice-mbp',
  addresses: ['100.101.102.103', 'fd7a:115c:a1e0::9f01:6667'],
  nodeKey: 'nodekey:6f1c2b4a9e8d7c6b5a49382716051f4e3d2c1b0a99887766554433221100ffee',
  // Larger than 2^53: a float would round it to ...992.
  user: { id: '9007199254740993', login: 'alice@example.com', displayName: 'Alice Example', profilePic: 'https://lh3.googleusercontent.com/a/ACg8ocExample=s96-c' },
};

export const BOB_GITHUB: FakeDevice = {
  nodeId: '4937112233447777',
  stableId: 'nBOBGH7CNTRL',
  hostname: 'bob-laptop',
  addresses: ['100.90.1.2', 'fd7a:115c:a1e0::5a01:102'],
  nodeKey: 'nodekey:1212121212121212121212121212121212121212121212121212121212121212',
  user: { id: '2915887766550002', login: 'bob@github', displayName: '<b>Bob</b> <script>alert(1)</script>' },
};

export const CI_RUNNER_TAGGED: FakeDevice = {
  nodeId: '4937112233449999',
  stableId: 'n123456CNTRL',
  hostname: 'ci-runner-3',
  addresses: ['100.88.77.66', 'fd7a:115c:a1e0::4e01:4d42'],
  nodeKey: 'nodekey:1111111111111111111111111111111111111111111111111111111111111111',
  user: { id: '2915887700000001', login: 'tagged-devices', displayName: 'Tagged Devices' },
  tags: ['tag:ci'],
};

export class FakeTailscaled {
  readonly socketPath: string;
  readonly requests: { url: string; host: string | undefined }[] = [];
  fault: Fault = 'none';
  private readonly devices: FakeDevice[] = [];
  private readonly proxyMap = new Map<string, string>(); // "127.0.0.1:port" -> tailnet IP
  private server: Server | undefined;
  private readonly hung = new Set<ServerResponse>();
  private readonly proxies = new Set<TcpServer | Server>();
  private readonly proxied = new Set<Socket>();

  constructor(socketPath: string, devices: FakeDevice[] = [ALICE, BOB_GITHUB, CI_RUNNER_TAGGED]) {
    this.socketPath = socketPath;
    this.devices.push(...devices);
  }

  async start(): Promise<this> {
    await rm(this.socketPath, { force: true });
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(this.socketPath, resolve));
    return this;
  }

  async stop(): Promise<void> {
    for (const socket of this.proxied) socket.destroy();
    for (const proxy of this.proxies) {
      if ('closeAllConnections' in proxy) proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
    this.proxies.clear();
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }

  /** What userspace-networking tailscaled does when it proxies a tailnet connection to us. */
  mapProxiedConnection(localAddress: string, localPort: number, device: FakeDevice): void {
    this.proxyMap.set(`${unmap(localAddress)}:${localPort}`, device.addresses[0]!);
  }

  unmapProxiedConnection(localAddress: string, localPort: number): void {
    this.proxyMap.delete(`${unmap(localAddress)}:${localPort}`);
  }

  /**
   * Userspace networking: every connection to the returned URL arrives at `target` from
   * 127.0.0.1 as a connection from `device` on the tailnet, byte for byte (headers included).
   * The connection stays known to whois until both sides have closed, as current tailscaled
   * keeps it; `forgetAtClientClose` plays older forwarders, which forgot it as soon as the client
   * closed its side (a half-close), and passed the close on.
   */
  async userspaceProxy(device: FakeDevice, target: string, options: { forgetAtClientClose?: boolean } = {}): Promise<string> {
    const to = new URL(target);
    const server = createTcpServer({ allowHalfOpen: true }, (client) => {
      client.pause();
      this.proxied.add(client);
      const backend = connect({ host: to.hostname.replace(/^\[|\]$/g, ''), port: Number(to.port), allowHalfOpen: true });
      this.proxied.add(backend);
      let key: [string, number] | undefined;
      const forget = () => {
        if (key) this.unmapProxiedConnection(key[0], key[1]);
      };
      backend.once('connect', () => {
        key = [backend.localAddress!, backend.localPort!];
        this.mapProxiedConnection(key[0], key[1], device);
        client.pipe(backend).pipe(client);
        client.resume();
      });
      if (options.forgetAtClientClose) client.once('end', forget);
      let open = 2;
      const closed = () => {
        if (--open > 0) return;
        forget();
        this.proxied.delete(client);
        this.proxied.delete(backend);
      };
      const fail = () => {
        client.destroy();
        backend.destroy();
      };
      client.once('close', closed).on('error', fail);
      backend.once('close', closed).on('error', fail);
    });
    return this.listen(server);
  }

  /**
   * `tailscale serve` in front of `target`: requests to the returned URL arrive as Serve would
   * forward them for `from` (a tailnet device, or 'funnel' for public traffic from `funnelIp`).
   */
  async serveProxy(from: FakeDevice | 'funnel', target: string, funnelIp = '198.51.100.23'): Promise<string> {
    const to = new URL(target);
    const server = createServer((req, res) => {
      const headers = { ...req.headers };
      for (const h of ['tailscale-user-login', 'tailscale-user-name', 'tailscale-user-profile-pic', 'tailscale-funnel-request',
        'tailscale-headers-info', 'tailscale-app-capabilities', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'forwarded']) {
        delete headers[h];
      }
      if (from === 'funnel') {
        headers['tailscale-funnel-request'] = '?1';
      } else if (!from.tags?.length) {
        headers['tailscale-user-login'] = qEncode(from.user.login);
        headers['tailscale-user-name'] = qEncode(from.user.displayName);
        if (from.user.profilePic) headers['tailscale-user-profile-pic'] = from.user.profilePic;
        headers['tailscale-headers-info'] = 'https://tailscale.com/s/serve-headers';
      }
      headers['x-forwarded-for'] = from === 'funnel' ? funnelIp : from.addresses[0]!;
      headers['x-forwarded-host'] = req.headers.host ?? '';
      headers['x-forwarded-proto'] = 'https';
      const upstream = request({ host: to.hostname.replace(/^\[|\]$/g, ''), port: to.port, method: req.method, path: req.url, headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
    });
    return this.listen(server);
  }

  private async listen(server: TcpServer | Server): Promise<string> {
    this.proxies.add(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ url: req.url ?? '', host: req.headers.host });
    const host = req.headers.host ?? '';
    if ((host !== '' && host !== 'local-tailscaled.sock') || req.headers.origin || req.headers.referer) {
      return text(res, 403, 'invalid localapi request');
    }
    const url = new URL(req.url ?? '/', 'http://local-tailscaled.sock');
    if (url.pathname !== '/localapi/v0/whois' && url.pathname !== '/localapi/v0/status') return text(res, 404, '404 page not found');
    if (this.fault === 'hang') {
      this.hung.add(res);
      return;
    }
    if (this.fault === 'http-500') return text(res, 500, 'internal error');
    if (this.fault === 'garbage') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('<html>not json');
      return;
    }
    if (url.pathname === '/localapi/v0/status') {
      // ipnstate.Status, as `tailscale status --json` prints it (the parts a reader uses).
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return void res.end(JSON.stringify({ Version: '1.90.6-t0123456789', BackendState: 'Running',
        CurrentTailnet: { Name: 'example.com', MagicDNSSuffix: 'tail1a2b3c.ts.net', MagicDNSEnabled: true },
        Self: { HostName: 'guestlist', DNSName: 'guestlist.tail1a2b3c.ts.net.', Online: true } }, null, '\t'));
    }
    const addr = url.searchParams.get('addr') ?? '';
    if (addr === '') return text(res, 400, "missing 'addr' parameter");

    let device: FakeDevice | undefined;
    if (addr.startsWith('nodekey:')) {
      device = this.devices.find((d) => d.nodeKey === addr);
    } else {
      const parsed = parseAddr(addr);
      if (!parsed) return text(res, 400, "invalid 'addr' parameter");
      const ip = unmap(parsed.ip);
      device = this.devices.find((d) => d.addresses.includes(ip));
      if (!device && parsed.port !== 0) {
        const mapped = this.proxyMap.get(`${ip}:${parsed.port}`);
        if (mapped) device = this.devices.find((d) => d.addresses.includes(mapped));
      }
    }
    if (!device) return text(res, 404, 'no match for IP:port');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(whoisJson(device));
  }
}

/** Go's mime.QEncoding.Encode("utf-8", v): printable ASCII unchanged, anything else one Q word. */
function qEncode(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  const body = [...Buffer.from(value, 'utf8')].map((b) => (b === 0x20 ? '_'
    : (b > 0x20 && b < 0x7f && b !== 0x3d && b !== 0x3f && b !== 0x5f) ? String.fromCharCode(b)
    : `=${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
  return `=?utf-8?q?${body}?=`;
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(`${body}\n`);
}

function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/** Go's netip.ParseAddr, then netip.ParseAddrPort. */
function parseAddr(addr: string): { ip: string; port: number } | undefined {
  if (isIPv4(addr) || isIPv6(addr)) return { ip: addr, port: 0 };
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(addr);
  if (v6 && isIPv6(v6[1]!) && Number(v6[2]) <= 65535) return { ip: v6[1]!, port: Number(v6[2]) };
  const v4 = /^(\d+\.\d+\.\d+\.\d+):(\d{1,5})$/.exec(addr);
  if (v4 && isIPv4(v4[1]!) && Number(v4[2]) <= 65535) return { ip: v4[1]!, port: Number(v4[2]) };
  return undefined;
}

/** A WhoIsResponse as tailscaled marshals it: json.MarshalIndent with tabs, ids as bare integers. */
export function whoisJson(d: FakeDevice): string {
  const raw = (digits: string) => `\u0000${digits}\u0000`;
  const response = {
    Node: {
      ID: raw(d.nodeId),
      StableID: d.stableId,
      Name: `${d.hostname}.tail1a2b3c.ts.net.`,
      User: raw(d.user.id),
      Key: d.nodeKey,
      Addresses: d.addresses.map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`)),
      AllowedIPs: d.addresses.map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`)),
      HomeDERP: 1,
      Hostinfo: { OS: 'linux', Hostname: d.hostname },
      Created: '2025-03-04T05:06:07.123456789Z',
      Cap: 130,
      ...(d.tags ? { Tags: d.tags } : {}),
      Online: true,
      MachineAuthorized: true,
      ComputedName: d.hostname,
      ComputedNameWithHost: d.hostname,
    },
    UserProfile: {
      ID: raw(d.user.id),
      LoginName: d.user.login,
      DisplayName: d.user.displayName,
      ...(d.user.profilePic ? { ProfilePicURL: d.user.profilePic } : {}),
    },
    CapMap: d.tags ? null : { 'https://tailscale.com/cap/file-sharing-target': null },
  };
  return JSON.stringify(response, null, '\t').replace(/"\\u0000(\d+)\\u0000"/g, '$1');
}
