import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

// koa signs cookies (oidc-provider's interaction and session cookies) through a Keygrip. Given an
// array of secrets, koa's cookies module builds a Keygrip on every request, and each signature
// check then makes three HMACs, two of them with a fresh random Buffer key (tsscmp), which
// Node 24 prepares slowly: about a tenth of a login's CPU. This signer makes the same
// signatures (HMAC-SHA1, base64url, like koa's default), so cookies set before an upgrade still
// verify, with the secrets imported once and a constant-time comparison of equal-length bytes.

export interface CookieSigner {
  sign(data: string): string;
  verify(data: string, digest: string): boolean;
  /** Which secret signed `data` (0 is the current one), or -1. */
  index(data: string, digest: string): number;
}

export function cookieSigner(secrets: readonly string[]): CookieSigner {
  if (secrets.length === 0) throw new Error('cookie signing needs at least one secret');
  const keys: KeyObject[] = secrets.map((s) => createSecretKey(Buffer.from(s, 'utf8')));
  const hmac = (key: KeyObject, data: string) => createHmac('sha1', key).update(data).digest('base64url');
  const index = (data: string, digest: string): number => {
    const given = Buffer.from(String(digest));
    let found = -1;
    // Every secret is tried, so the time taken does not say which one matched.
    for (let i = 0; i < keys.length; i++) {
      const expected = Buffer.from(hmac(keys[i]!, data));
      if (expected.length === given.length && timingSafeEqual(expected, given) && found === -1) found = i;
    }
    return found;
  };
  return {
    sign: (data) => hmac(keys[0]!, data),
    verify: (data, digest) => index(data, digest) > -1,
    index,
  };
}
