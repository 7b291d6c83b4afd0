import { formatListen, isLoopbackHost, isObject, optionalBoolean, optionalString, unknownKeys } from '../../config/fields.ts';

// The `tailscale:` section of the config.

export interface TailscaleConfig {
  socket: string;
  allow_tagged: boolean;
  serve_headers: boolean;
}

export const DEFAULT_TAILSCALE_SOCKET = '/var/run/tailscale/tailscaled.sock';

export function parseTailscaleConfig(value: unknown, problems: string[]): TailscaleConfig | undefined {
  if (value === null) value = {};
  if (!isObject(value)) {
    problems.push('tailscale: must be a mapping (an empty "tailscale: {}" uses the defaults)');
    return undefined;
  }
  unknownKeys(value, ['socket', 'allow_tagged', 'serve_headers'], 'tailscale', problems);
  return {
    socket: optionalString(value.socket, 'tailscale.socket', problems) ?? DEFAULT_TAILSCALE_SOCKET,
    allow_tagged: optionalBoolean(value.allow_tagged, 'tailscale.allow_tagged', problems) ?? false,
    serve_headers: optionalBoolean(value.serve_headers, 'tailscale.serve_headers', problems) ?? false,
  };
}

/**
 * `tailscale serve`'s headers are only as good as the rule that nobody else can send them: a
 * listener that the network reaches would let anyone on it claim any tailnet identity.
 */
export function serveHeadersProblem(tailscale: TailscaleConfig, listen: { host: string; port: number }, listenKey = 'listen'): string | undefined {
  if (!tailscale.serve_headers || isLoopbackHost(listen.host)) return undefined;
  return `tailscale.serve_headers: true trusts identity headers that anyone who can reach guestlist could send, so it needs a loopback-only listener, but ${listenKey} is "${formatListen(listen)}"; `
    + 'set listen: "127.0.0.1:8080" (tailscale serve connects from loopback) or turn serve_headers off';
}
