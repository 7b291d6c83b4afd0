import { createHash } from 'node:crypto';
import type { SourceKind } from '../source-kind.ts';
import { parsePlexConfig, type PlexConfig } from './config.ts';
import { PLEX_TIERS, PLEX_TIMEOUT_MS, plexSource } from './plex.ts';
import { plexRecheck } from './recheck.ts';
import { plexSignIn } from './sign-in.ts';

export const plexKind: SourceKind<'plex', PlexConfig> = {
  name: 'plex',
  howToAdd: 'a "plex:" section',
  parse: parsePlexConfig,
  views: ['plex'],
  groups: (section) => [...PLEX_TIERS, ...section.server_ids.map((id) => `plex:${id}`)],
  // Plex asks apps to keep one client identifier per installation; the issuer names ours.
  create(section, deps) {
    const plex = plexSource(section, `guestlist-${createHash('sha256').update(deps.issuer).digest('hex').slice(0, 24)}`, deps.version, deps.timeoutMs);
    return plexSignIn(plex, deps.bindings, plexRecheck(plex, deps.vault, deps.timeoutMs ?? PLEX_TIMEOUT_MS, deps.keepSeconds));
  },
};
