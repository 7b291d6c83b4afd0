import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Account } from '../sign-in/accounts.ts';
import type { SignIn } from '../sign-in/sign-in.ts';

// Who is signed in to guestlist itself in this browser: the person of oidc-provider's session
// (its cookie), unless their sign-ins were ended since. What the home page greets and what the
// console lets in; the apps ask for themselves.

export type WhoIsHere = (ctx: Context) => Promise<{ account: Account; source: string; sessionId: string } | undefined>;

export function whoIsHere(provider: Provider, signIn: Pick<SignIn, 'accountOf'>): WhoIsHere {
  return async (ctx) => {
    // Outside oidc-provider's routes: it reads its signed session cookie from the request itself.
    const session = await provider.Session.get(ctx as unknown as Parameters<typeof provider.Session.get>[0]);
    const sub = session.accountId;
    if (!sub) return undefined;
    const account = await signIn.accountOf(sub, session.loginTs);
    return account && { account, source: account.identity.source, sessionId: session.jti };
  };
}
