import { createHash } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Config } from '../config.ts';
import type { Pages } from '../http/pages.ts';
import type { PinBindings } from './plex/pins.ts';
import { demoRoutes } from './demo/demo.ts';
import { demoSource } from './demo/demo-source.ts';
import { parsePlexConfig, type PlexConfig } from './plex/config.ts';
import { plexSource } from './plex/plex.ts';
import { plexSignIn } from './plex/sign-in.ts';
import { sourceOf } from '../accounts.ts';
import type { AmbientSource, InteractiveSource } from './source.ts';
import { parseTailscaleConfig, serveHeadersProblem, type TailscaleConfig } from './tailscale/config.ts';
import { tailscaleSource } from './tailscale/tailscale.ts';

// Every identity source guestlist knows, by the name of its config section (which is also its
// name in clients[].sources and the prefix of the `sub` it vouches for). The core config, the
// server and the CLI read this list; nothing outside src/sources/ names a source. Adding one is a
// folder under src/sources/ and a line here.

/** The config sections of the sources, each optional: a source is on when its section is there. */
export interface SourceConfigs {
  tailscale?: TailscaleConfig;
  plex?: PlexConfig;
}

type Listen = { host: string; port: number };

/** What a source may need from the server when it is made. */
export interface SourceDeps {
  issuer: string;
  version: string;
  /** The state sources keep in the server's store (in memory or in Redis). */
  pins: PinBindings;
  whoisTimeoutMs?: number;
  plexTimeoutMs?: number;
}

export interface SourceKind<K extends keyof SourceConfigs = keyof SourceConfigs> {
  name: K;
  /** How a config turns it on, for the "no identity source" problem. */
  howToAdd: string;
  /** The views in views/ its pages use, loaded at start so a missing one fails then. */
  views?: string[];
  create(section: NonNullable<SourceConfigs[K]>, deps: SourceDeps): AmbientSource | InteractiveSource;
  /** Reads its config section, reporting problems with their key paths. */
  parse(raw: unknown, problems: string[]): NonNullable<SourceConfigs[K]> | undefined;
  /** Paths in its section, resolved against the config file's folder. */
  resolvePaths?(section: NonNullable<SourceConfigs[K]>, near: (path: string) => string): NonNullable<SourceConfigs[K]>;
  /** What only shows next to the rest of the config (listen, say). */
  problems?(section: NonNullable<SourceConfigs[K]>, listen: Listen, listenKey: string): (string | undefined)[];
}

const tailscale: SourceKind<'tailscale'> = {
  name: 'tailscale',
  howToAdd: 'a "tailscale:" section (an empty "tailscale: {}" uses the defaults)',
  parse: parseTailscaleConfig,
  resolvePaths: (section, near) => ({ ...section, socket: near(section.socket) }),
  problems: (section, listen, listenKey) => [serveHeadersProblem(section, listen, listenKey)],
  create: (section, deps) => tailscaleSource(section, deps.whoisTimeoutMs),
};

const plex: SourceKind<'plex'> = {
  name: 'plex',
  howToAdd: 'a "plex:" section',
  parse: parsePlexConfig,
  views: ['plex'],
  // Plex asks apps to keep one client identifier per installation; the issuer names ours.
  create: (section, deps) => plexSignIn(
    plexSource(section, `guestlist-${createHash('sha256').update(deps.issuer).digest('hex').slice(0, 24)}`, deps.version, deps.plexTimeoutMs),
    deps.pins, deps.issuer),
};

export const SOURCE_KINDS: readonly SourceKind[] = [tailscale, plex] as SourceKind[];

/** The sections with their relative paths resolved (the core resolves its own). */
export function resolveSourcePaths(config: SourceConfigs, near: (path: string) => string): SourceConfigs {
  const out: Record<string, unknown> = {};
  for (const kind of SOURCE_KINDS) {
    const section = config[kind.name];
    if (section !== undefined) out[kind.name] = kind.resolvePaths ? kind.resolvePaths(section as never, near) : section;
  }
  return out as SourceConfigs;
}

/** Problems of the configured sources that depend on the rest of the config. */
export function sourceProblems(config: SourceConfigs & { listen: Listen }, listenKey = 'listen'): string[] {
  return SOURCE_KINDS.flatMap((kind) => {
    const section = config[kind.name];
    return section === undefined || !kind.problems ? [] : kind.problems(section as never, config.listen, listenKey);
  }).filter((p): p is string => p !== undefined);
}

/** The names of the sources a config turns on. */
export function configuredSources(config: SourceConfigs): string[] {
  return SOURCE_KINDS.filter((k) => config[k.name] !== undefined).map((k) => k.name);
}

export interface Sources {
  ambient: AmbientSource[];
  interactive: InteractiveSource[];
  /** Views the sources' pages use. */
  views: string[];
  /** The one rule for "came from an ambient source" (its sessions are re-checked every time). */
  isAmbient(sub: string | undefined): boolean;
}

/** The configured sources, made; the built-in demo puts its sample user behind Tailscale. */
export function createSources(config: Config, deps: SourceDeps): Sources {
  const configured = SOURCE_KINDS.filter((k) => config[k.name] !== undefined);
  const made = configured.map((k) => k.create(config[k.name] as never, deps));
  let ambient = made.filter((s): s is AmbientSource => s.kind === 'ambient');
  const interactive = made.filter((s): s is InteractiveSource => s.kind === 'interactive');
  if (config.demo) ambient = [demoSource(ambient.find((s) => s.name === 'tailscale'))];
  const ambientNames = new Set(ambient.map((s) => s.name));
  return {
    ambient,
    interactive,
    views: [...configured.flatMap((k) => k.views ?? []), ...(config.demo ? ['demo', 'demo-result'] : [])],
    isAmbient: (sub) => sub !== undefined && ambientNames.has(sourceOf(sub)),
  };
}

/** Routes of their own that sources add outside /interaction (the demo's built-in app at `/`). */
export function sourceRoutes(config: Config, pages: Pages): Middleware | undefined {
  return config.demo ? demoRoutes(config, pages) : undefined;
}

/** The sources a running server signs people in with, as its ready line lists them. */
export function describeSources(config: Config): string[] {
  if (config.demo) return ['tailscale (when tailscaled answers)', 'demo sample user'];
  return configuredSources(config);
}
