import type { Vault } from '../storage/store.ts';
import type { SignInBindings } from './sign-in-bindings.ts';
import type { AmbientSource, InteractiveSource } from './source.ts';

// What a source brings to the registry (sources/registry.ts): its config section, how it is made,
// its views. Each source's folder has one (`kind.ts`).

export type Listen = { host: string; port: number };

/** What a source may need from the server when it is made. */
export interface SourceDeps {
  issuer: string;
  version: string;
  /** This source's own bindings of upstream requests to sign-ins, in the server's store (memory or Redis). */
  bindings: SignInBindings;
  /** This source's own vault in the server's store: what it keeps of a person, server-side only. */
  vault: Vault;
  /** The longest a sign-in may be used (seconds): a day, or a refresh token's lifetime when an app gets them. */
  keepSeconds: number;
  /** How long to wait for its upstream (tests shorten it); the source's own default otherwise. */
  timeoutMs?: number;
}

export interface SourceKind<N extends string = string, C = unknown> {
  /** Its config section's key, its name in clients[].sources, and the prefix of the `sub` it vouches for. */
  name: N;
  /** How a config turns it on, for the "no identity source" problem. */
  howToAdd: string;
  /** The views in views/ its pages use, loaded at start so a missing one fails then. */
  views?: string[];
  /** Reads its config section, reporting problems with their key paths. */
  parse(raw: unknown, problems: string[]): C | undefined;
  /** Paths in its section, resolved against the config file's folder. */
  resolvePaths?(section: C, near: (path: string) => string): C;
  /** What only shows next to the rest of the config (listen, say). */
  problems?(section: C, listen: Listen, listenKey: string): (string | undefined)[];
  /** What works but is probably not what the operator wants (plain http to a public address, say). */
  warnings?(section: C): (string | undefined)[];
  /**
   * The groups it vouches for people's membership of (plex-home, jellyfin-admin, ...): an app's
   * allowed_groups may name them without the config's `groups` defining them.
   */
  groups?(section: C): string[];
  create(section: C, deps: SourceDeps): AmbientSource | InteractiveSource;
}
