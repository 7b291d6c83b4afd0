// How oidc-provider's models, and the rate counters, are kept in either store.

// Models whose entries belong to a grant and must go when the grant is revoked
// (for example when a code is replayed, every token issued from it is revoked).
export const GRANT_BOUND = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

// oidc-provider checks expiry itself with this tolerance; keep entries that long past their TTL.
export const CLOCK_TOLERANCE_MS = 15_000;

/** How long to keep an entry that oidc-provider says expires in `expiresIn` seconds; undefined: for good. */
export function entryTtlMs(expiresIn: number | undefined, toleranceMs = CLOCK_TOLERANCE_MS): number | undefined {
  return expiresIn && expiresIn > 0 ? expiresIn * 1000 + toleranceMs : undefined;
}

/** Shares a rate counter holds in one window (in memory, about 5 MB at the most). */
export const RATE_SHARES_MAX = 50_000;

/** Sign-in events the console keeps, the oldest going first. */
export const EVENTS_KEPT = 1000;
/** Hours of per-hour counts kept (the console's chart shows the last 24). */
export const HOURS_KEPT = 25;
export const HOUR_MS = 3600_000;
