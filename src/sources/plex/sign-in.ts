import { createHash, timingSafeEqual } from 'node:crypto';
import { isObject } from '../../config/fields.ts';
import { bindRefused, claimOrFollow, type SignInBindings } from '../sign-in-bindings.ts';
import { DAY_SECONDS, logOnly, Refusal, type InteractiveSource, type SignInStep, type StepOutcome } from '../source.ts';
import type { PlexSource } from './plex.ts';
import type { PlexRecheck } from './recheck.ts';

// The Plex sign-in's steps, behind /interaction/:uid/plex/... (views/plex.html, static/plex.js):
//
//   POST pin     the page made a PIN at plex.tv: bind it (id and secret code) to this sign-in
//   POST finish  the page saw Plex approve: check it all on the server, once per sign-in
//   GET  return  the same, when Plex forwards the tab back (no popup possible)
//
// The browser creates the PIN (Plex shows a "Security Alert" for one made from another IP), but
// nothing it says is believed: the server reads the PIN, the account and its resources itself.
// A PIN is bound to the sign-in whose page created it, from the server side, before the person
// ever sees Plex: the page proves it holds the PIN (its secret code, which only the creator and
// plex.tv know), the forwardUrl carries no PIN id, and a PIN binds once (sign-in-bindings.ts). So
// a PIN approved by someone else (an attacker's account) cannot be slipped into another person's
// sign-in, and nobody can bind a PIN they did not create.

export function plexSignIn(plex: PlexSource, pins: SignInBindings, recheck: PlexRecheck): InteractiveSource {
  /** The same check for the page's finish and for Plex's forward back. */
  const finish = (returned: boolean) => async (step: SignInStep): Promise<StepOutcome> => {
    const bound = await claimOrFollow(pins, step);
    if (!bound) return { page: { status: 400, notice: 'Start the Plex sign-in again.' } };
    if ('redirect' in bound) return bound;
    let settled = false;
    try {
      const pin = await plex.readPin(Number(bound.ref));
      if (pin.state === 'pending') {
        await pins.restore(step.uid, bound);
        settled = true;
        return { page: { status: 200, notice: returned ? 'The Plex sign-in was cancelled or has not finished. Try again.' : 'Plex has not confirmed the sign-in yet. Try again.' } };
      }
      if (pin.state === 'expired') {
        return {
          page: { status: 400, notice: 'That Plex sign-in expired before it was finished. Start again.' },
          log: { reason: 'expired', detail: `PIN ${bound.ref} expired before it was approved` },
        };
      }
      const identity = await plex.identify(pin.token);
      await recheck.remember(identity, pin.token);
      return { identity };
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      // plex.tv could not be asked: the sign-in page again, as Jellyfin's, where a new PIN can
      // finish this same sign-in once Plex answers (the person does not start over at the app).
      if (err.reason === 'source-unavailable') return { page: { status: 503, notice: `${err.title}: ${err.message}` }, log: logOnly(err) };
      return { refusal: err };
    } finally {
      if (!settled) await pins.settle(step.uid);
    }
  };

  return {
    kind: 'interactive',
    name: 'plex',
    label: 'Plex',
    // Holds a day, and is verified with plex.tv again once it is older than plex.recheck_after.
    session: { holdsFor: DAY_SECONDS, verifyAgain: recheck.verifyAgain },
    health: () => plex.health(),
    upstreamToken: (identity) => recheck.tokenOf(identity),
    // The page talks to plex.tv from the browser, to create and watch its PIN.
    connectTo: [new URL(plex.config.api_url).origin],

    page: (step) => ({
      view: 'plex',
      values: {
        plex_client_id: plex.clientIdentifier,
        plex_product: plex.config.product,
        plex_api: plex.config.api_url,
        plex_app: plex.config.app_url,
        bind_url: step.actionUrl('pin'),
        finish_url: step.actionUrl('finish'),
        return_url: step.actionUrl('return', true),
      },
    }),

    actions: {
      pin: {
        method: 'POST',
        json: true,
        async handle(step) {
          const posted = readPostedPin(await step.readJson(1024));
          if (!posted) return { json: { status: 400, body: { error: 'Expected a JSON body {"id": <PIN id>, "code": "<PIN code>"}.' } } };
          // Read the PIN first: a PIN that does not exist (yet) binds nothing and burns nothing.
          let pin;
          try {
            pin = await plex.readPin(posted.id);
          } catch (err) {
            if (!(err instanceof Refusal)) throw err;
            return { json: { status: 503, body: { error: err.message } }, log: logOnly(err) };
          }
          // A PIN approved before it was offered to this sign-in was approved for someone else's.
          if (pin.state !== 'pending') {
            const approved = pin.state === 'approved';
            return {
              json: { status: 409, body: { error: approved ? 'This Plex PIN was already approved. Start again.' : 'This Plex PIN has expired. Start again.' } },
              log: { reason: approved ? 'not-verified' : 'expired', detail: `PIN ${posted.id} was ${approved ? 'already approved' : 'expired or unknown'} when offered` },
            };
          }
          if (!sameSecret(pin.code, posted.code)) {
            return {
              json: { status: 409, body: { error: 'This Plex PIN does not belong to this sign-in. Start again.' } },
              log: { reason: 'not-verified', detail: `PIN ${posted.id} was offered with the wrong code` },
            };
          }
          const bound = await pins.bind(step.uid, { ref: String(posted.id), expiresAt: pin.expiresAt }, await step.network());
          if (bound === 'bound') return { json: { status: 204 } };
          if (bound === 'taken') return { json: { status: 409, body: { error: 'This Plex PIN was already used. Start again.' } } };
          return bindRefused(bound, 'Plex', `PIN ${posted.id} not bound`);
        },
      },
      finish: { method: 'POST', once: true, handle: finish(false) },
      return: { method: 'GET', once: true, handle: finish(true) },
    },
  };
}

function readPostedPin(body: unknown): { id: number; code: string } | undefined {
  const { id, code } = (isObject(body) ? body : {}) as { id?: unknown; code?: unknown };
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return undefined;
  if (typeof code !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(code)) return undefined;
  return { id, code };
}

/** Compared in constant time (hashed first, so lengths leak nothing either). */
function sameSecret(expected: string, given: string): boolean {
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(expected), digest(given));
}
