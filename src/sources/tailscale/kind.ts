import type { SourceKind } from '../source-kind.ts';
import { parseTailscaleConfig, serveHeadersProblem, type TailscaleConfig } from './config.ts';
import { tailscaleSource } from './tailscale.ts';

export const tailscaleKind: SourceKind<'tailscale', TailscaleConfig> = {
  name: 'tailscale',
  howToAdd: 'a "tailscale:" section (an empty "tailscale: {}" uses the defaults)',
  parse: parseTailscaleConfig,
  resolvePaths: (section, near) => ({ ...section, socket: near(section.socket) }),
  problems: (section, listen, listenKey) => [serveHeadersProblem(section, listen, listenKey)],
  create: (section, deps) => tailscaleSource(section, deps.timeoutMs),
};
