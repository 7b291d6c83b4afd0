import { demoSource } from '../demo/source.ts';
import { jellyfinKind } from './jellyfin/kind.ts';
import { plexKind } from './plex/kind.ts';
import type { BindingStore } from '../storage/bindings.ts';
import type { Vault } from '../storage/store.ts';
import { scopedBindings } from './sign-in-bindings.ts';
import type { Listen, SourceDeps, SourceKind } from './source-kind.ts';
import type { AmbientSource, Identity, InteractiveSource, SessionRule } from './source.ts';
import { tailscaleKind } from './tailscale/kind.ts';

// Every identity source guestlist knows, by the name of its config section (which is also its
// name in clients[].sources and the prefix of the `sub` it vouches for). The core config, the
// server and the CLI read this list; nothing outside src/sources/ names a source. Adding one is a
// folder under src/sources/ (with its kind.ts) and its entry here.
const KINDS = [tailscaleKind, plexKind, jellyfinKind] as const;

type Kind = (typeof KINDS)[number];
/** The config sections of the sources, each optional: a source is on when its section is there. */
export type SourceConfigs = { [K in Kind as K['name']]?: K extends SourceKind<string, infer C> ? C : never };

// Seen from outside, a kind's section is opaque: only the kind itself reads it.
export const SOURCE_KINDS = KINDS as unknown as readonly SourceKind<keyof SourceConfigs>[];

/** The sections with their relative paths resolved (the core resolves its own). */
export function resolveSourcePaths(config: SourceConfigs, near: (path: string) => string): SourceConfigs {
  const out: Record<string, unknown> = {};
  for (const kind of SOURCE_KINDS) {
    const section = config[kind.name];
    if (section !== undefined) out[kind.name] = kind.resolvePaths ? kind.resolvePaths(section as never, near) : section;
  }
  return out as SourceConfigs;
}

/** The kinds a config turns on, each with its section. */
function configuredKinds(config: SourceConfigs): { kind: SourceKind<keyof SourceConfigs>; section: never }[] {
  return SOURCE_KINDS.filter((kind) => config[kind.name] !== undefined).map((kind) => ({ kind, section: config[kind.name] as never }));
}

const present = (line: string | undefined): line is string => line !== undefined;

/** Problems of the configured sources that depend on the rest of the config. */
export function sourceProblems(config: SourceConfigs & { listen: Listen }, listenKey = 'listen'): string[] {
  return configuredKinds(config).flatMap(({ kind, section }) => kind.problems?.(section, config.listen, listenKey) ?? []).filter(present);
}

/** Warnings about the configured sources: the config is valid, but `check` and the start say these. */
export function sourceWarnings(config: SourceConfigs): string[] {
  return configuredKinds(config).flatMap(({ kind, section }) => kind.warnings?.(section) ?? []).filter(present);
}

/** The groups the configured sources vouch for (an app may allow them without `groups` defining them). */
export function sourceGroups(config: SourceConfigs): string[] {
  return configuredKinds(config).flatMap(({ kind, section }) => kind.groups?.(section) ?? []);
}

/** The names of the sources a config turns on. */
export function configuredSources(config: SourceConfigs): string[] {
  return configuredKinds(config).map(({ kind }) => kind.name);
}

export interface Sources {
  ambient: AmbientSource[];
  interactive: InteractiveSource[];
  /** Views the sources' pages use. */
  views: string[];
  /** Each source's session rule, by the source name that prefixes the `sub`s it vouches for. */
  rules: ReadonlyMap<string, SessionRule>;
  /** The sources that keep an upstream token for a person (Plex), by name. */
  upstreamTokens: ReadonlyMap<string, (identity: Identity) => Promise<string | undefined>>;
}

/** What the server hands the sources; each gets its own share of it (SourceDeps). */
export interface ServerDeps {
  issuer: string;
  version: string;
  bindings: BindingStore;
  vault: Vault;
  /** The longest a sign-in may be used (seconds). */
  keepSeconds: number;
  /** Upstream timeouts by source name (tests shorten them). */
  timeoutsMs?: Partial<Record<string, number>>;
}

/** One source's part of the vault, apart from any other source's. */
function scopedVault(vault: Vault, source: string): Vault {
  const k = (key: string) => `${source}:${key}`;
  return {
    put: (key, value, ttlMs) => vault.put(k(key), value, ttlMs),
    get: (key) => vault.get(k(key)),
    delete: (key) => vault.delete(k(key)),
    claim: (key, ttlMs) => vault.claim(k(key), ttlMs),
    unclaim: (key) => vault.unclaim(k(key)),
  };
}

/** The configured sources, made; the built-in demo puts its sample user behind Tailscale. */
export function createSources(config: SourceConfigs & { demo: boolean }, deps: ServerDeps): Sources {
  const configured = configuredKinds(config);
  const depsOf = (name: string): SourceDeps => {
    const timeoutMs = deps.timeoutsMs?.[name];
    return { issuer: deps.issuer, version: deps.version, bindings: scopedBindings(deps.bindings, name), vault: scopedVault(deps.vault, name), keepSeconds: deps.keepSeconds, ...(timeoutMs ? { timeoutMs } : {}) };
  };
  const made = configured.map(({ kind, section }) => kind.create(section, depsOf(kind.name)));
  let ambient = made.filter((s): s is AmbientSource => s.kind === 'ambient');
  const interactive = made.filter((s): s is InteractiveSource => s.kind === 'interactive');
  // Taken before the demo takes their place: the demo signs in whoever tailscaled vouches for as
  // that source's own sub (tailscale:...), under tailscale's rule there as anywhere.
  const rules = new Map(made.map((s) => [s.name, s.session]));
  if (config.demo) {
    const demo = demoSource(ambient.find((s) => s.name === 'tailscale'));
    ambient = [demo];
    rules.set(demo.name, demo.session);
  }
  return {
    ambient,
    interactive,
    views: [...configured.flatMap(({ kind }) => kind.views ?? []), ...(config.demo ? ['demo', 'demo-result'] : [])],
    rules,
    upstreamTokens: new Map(interactive.flatMap((s) => (s.upstreamToken ? [[s.name, s.upstreamToken.bind(s)] as const] : []))),
  };
}

/** The sources a running server signs people in with, as its ready line lists them. */
export function describeSources(config: SourceConfigs & { demo: boolean }): string[] {
  if (config.demo) return ['tailscale (when tailscaled answers)', 'demo sample user'];
  return configuredSources(config);
}
