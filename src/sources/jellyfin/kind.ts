import type { SourceKind } from '../source-kind.ts';
import { parseJellyfinConfig, plainHttpWarning, type JellyfinConfig } from './config.ts';
import { jellyfinClient } from './jellyfin.ts';
import { jellyfinSignIn } from './sign-in.ts';

export const jellyfinKind: SourceKind<'jellyfin', JellyfinConfig> = {
  name: 'jellyfin',
  howToAdd: 'a "jellyfin:" section with its url',
  parse: parseJellyfinConfig,
  groups: () => ['jellyfin', 'jellyfin-admin'],
  warnings: (section) => [plainHttpWarning(section)],
  views: ['jellyfin'],
  // The device name Jellyfin's dashboard lists (for the moment each sign-in's token lives).
  create: (section, deps) => jellyfinSignIn(
    jellyfinClient(section, deps.version, `guestlist (${new URL(deps.issuer).host})`, deps.timeoutMs),
    deps.bindings),
};
