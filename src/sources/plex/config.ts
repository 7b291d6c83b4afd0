import { isLoopbackHost, isObject, optionalDuration, optionalString, stringList, unknownKeys } from '../../config/fields.ts';

// The `plex:` section of the config.

export interface PlexConfig {
  /** machineIdentifiers of the Plex servers whose owner and share holders get in. */
  server_ids: string[];
  /** Shown by Plex on its approval screen and in the person's list of authorized devices. */
  product: string;
  api_url: string;
  app_url: string;
  /** Seconds after which a Plex sign-in is verified with plex.tv again, at the next authorization that reuses it; 0: at every one. */
  recheck_after: number;
  /** Seconds a last good verdict is kept while plex.tv is not answering a re-check. */
  grace_when_down: number;
}

export const DEFAULT_RECHECK_AFTER = 15 * 60;
export const DEFAULT_GRACE_WHEN_DOWN = 3600;

export function parsePlexConfig(value: unknown, problems: string[]): PlexConfig | undefined {
  if (!isObject(value)) {
    problems.push('plex: must be a mapping with at least server_id');
    return undefined;
  }
  unknownKeys(value, ['server_id', 'server_ids', 'product', 'api_url', 'app_url', 'recheck_after', 'grace_when_down'], 'plex', problems);
  const ids: string[] = [];
  if (value.server_id !== undefined) {
    const id = optionalString(value.server_id, 'plex.server_id', problems);
    if (id) ids.push(id);
  }
  if (value.server_ids !== undefined) ids.push(...(stringList(value.server_ids, 'plex.server_ids', problems, { allowEmpty: false }) ?? []));
  if (value.server_id === undefined && value.server_ids === undefined) {
    problems.push('plex.server_id: missing; set it to the machineIdentifier of the Plex server whose users may sign in (see the README)');
  }
  for (const id of ids) {
    if (!/^[A-Za-z0-9-]{8,64}$/.test(id)) problems.push(`plex.server_id: "${id}" does not look like a Plex machineIdentifier (40 hex characters)`);
  }
  const url = (key: 'api_url' | 'app_url', fallback: string) => {
    const v = optionalString(value[key], `plex.${key}`, problems) ?? fallback;
    const u = URL.parse(v);
    if (!u || (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname)))) {
      problems.push(`plex.${key}: "${v}" must be an https URL`);
    }
    return v.replace(/\/+$/, '');
  };
  return {
    server_ids: ids,
    product: optionalString(value.product, 'plex.product', problems) ?? 'guestlist',
    api_url: url('api_url', 'https://plex.tv'),
    app_url: url('app_url', 'https://app.plex.tv/auth'),
    recheck_after: optionalDuration(value.recheck_after, 'plex.recheck_after', problems) ?? DEFAULT_RECHECK_AFTER,
    grace_when_down: optionalDuration(value.grace_when_down, 'plex.grace_when_down', problems) ?? DEFAULT_GRACE_WHEN_DOWN,
  };
}
