import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Binding } from '../../storage/bindings.ts';
import { bindRefused, claimOrFollow, type SignInBindings } from '../sign-in-bindings.ts';
import { DAY_SECONDS, logOnly, Refusal, type InteractiveSource, type SignInStep, type StepOutcome } from '../source.ts';
import { identityOf, JellyfinUnavailable, REQUEST_LIFETIME_MS, type JellyfinClient } from './jellyfin.ts';

// The Jellyfin sign-in's steps, behind /interaction/:uid/jellyfin/... (views/jellyfin.html,
// static/jellyfin.js):
//
//   POST code    start a Quick Connect request at Jellyfin for this sign-in; the page gets the code
//   POST wait    has Jellyfin seen the code authorized? (answers within WAIT_MS; the page asks again)
//   POST finish  collect the sign-in from Jellyfin, once per sign-in, and sign the person in
//
// The Quick Connect secret is the key to the person's sign-in: it is bound to this sign-in on
// the server (sign-in-bindings.ts) and never sent to the browser, which sees only the six
// digits to type into Jellyfin. The binding is made before Jellyfin is asked, so a network's
// share of live requests is capped before Jellyfin keeps anything; its reference is the
// request's own DeviceId, fresh for each.

/** How long one wait request holds on before the page asks again. */
const WAIT_MS = 20_000;
/** How often a waiting request asks Jellyfin. */
const ASK_EVERY_MS = 1000;
/** Forget a request a little before Jellyfin does, so a code shown is a code Jellyfin still knows. */
const EXPIRY_MARGIN_MS = 15_000;

interface Request {
  deviceId: string;
  secret: string;
  code: string;
  expiresAt: number;
}

/** The request bound to a sign-in; undefined while it is being started. */
function requestOf(binding: Binding): Request | undefined {
  if (!binding.data) return undefined;
  const { secret, code } = JSON.parse(binding.data) as { secret: string; code: string };
  return { deviceId: binding.ref, secret, code, expiresAt: binding.expiresAt };
}

/** The page's answer while a request waits for the person: its code, and until when. */
const pending = (request: Pick<Request, 'code' | 'expiresAt'>): StepOutcome =>
  ({ json: { status: 200, body: { state: 'pending', code: request.code, expiresAt: request.expiresAt } } });

const NO_LONGER_VALID = 'That Jellyfin code is no longer valid. Press the button to get a new one.';

export function jellyfinSignIn(jellyfin: JellyfinClient, requests: SignInBindings): InteractiveSource {
  const { config } = jellyfin;

  /** Jellyfin lost the request (it expired, or Jellyfin restarted): this sign-in needs a new code. */
  async function forget(step: SignInStep): Promise<void> {
    if (typeof await requests.claim(step.uid) === 'object') await requests.settle(step.uid);
  }

  const unavailable = (refusal: Refusal): StepOutcome => ({ json: { status: 503, retryAfter: 5, body: { error: refusal.message } }, log: logOnly(refusal) });

  async function startRequest(step: SignInStep): Promise<StepOutcome> {
    const deviceId = randomBytes(16).toString('hex');
    const expiresAt = Date.now() + REQUEST_LIFETIME_MS - EXPIRY_MARGIN_MS;
    const bound = await requests.bind(step.uid, { ref: deviceId, expiresAt }, await step.network());
    if (bound !== 'bound') return bindRefused(bound === 'taken' ? 'full' : bound, 'Jellyfin', 'no Quick Connect request started');
    let started;
    try {
      started = await jellyfin.initiate(deviceId);
    } catch (err) {
      // Jellyfin answered with an error: it made nothing, so the place is given back. After a
      // timeout or a broken answer it may have made the request, which keeps the place until the
      // request would have expired.
      if (err instanceof JellyfinUnavailable && err.httpStatus !== undefined) await requests.release(step.uid, deviceId);
      else await forget(step);
      if (!(err instanceof Refusal)) throw err;
      return unavailable(err);
    }
    // The reservation becomes the request: same reference, now with what Jellyfin handed out.
    await requests.restore(step.uid, { ref: deviceId, expiresAt, data: JSON.stringify({ secret: started.secret, code: started.code }) });
    return pending({ code: started.code, expiresAt });
  }

  return {
    kind: 'interactive',
    name: 'jellyfin',
    label: 'Jellyfin',
    session: { holdsFor: DAY_SECONDS },
    health: () => jellyfin.health(),
    // The page talks only to guestlist; guestlist talks to Jellyfin.
    connectTo: [],

    page: (step) => ({
      view: 'jellyfin',
      values: {
        server_name: config.server_name ?? 'the Jellyfin server',
        // A link only where the configured address is surely one people can open too.
        jellyfin_link: config.url.startsWith('https://') ? `${config.url}/web/#/quickconnect` : undefined,
        code_url: step.actionUrl('code'),
        wait_url: step.actionUrl('wait'),
        finish_url: step.actionUrl('finish'),
      },
    }),

    actions: {
      code: {
        method: 'POST',
        json: true,
        async handle(step) {
          const bound = await requests.peek(step.uid);
          if (bound === 'finishing') return { json: { status: 200, body: { state: 'authorized' } } };
          if (bound) {
            // A page opened twice, or reloaded: the code already handed out for this sign-in.
            const request = requestOf(bound);
            if (!request) return { json: { status: 409, retryAfter: 1, body: { error: 'A code is being made for this sign-in. Try again in a moment.' } } };
            return pending(request);
          }
          return startRequest(step);
        },
      },

      wait: {
        method: 'POST',
        json: true,
        async handle(step) {
          for (const until = Date.now() + WAIT_MS; ;) {
            const bound = await requests.peek(step.uid);
            if (bound === 'finishing') return { json: { status: 200, body: { state: 'authorized' } } };
            if (!bound) {
              // Finished by another page (the finish form follows it there), or gone.
              const done = await step.finishedTo();
              return { json: { status: 200, body: { state: done ? 'authorized' : 'expired' } } };
            }
            const request = requestOf(bound);
            if (request) {
              let state;
              try {
                state = await jellyfin.state(request.secret, request.deviceId);
              } catch (err) {
                if (!(err instanceof Refusal)) throw err;
                return unavailable(err);
              }
              if (state === 'authorized') return { json: { status: 200, body: { state } } };
              if (state === 'expired') {
                await forget(step);
                return {
                  json: { status: 200, body: { state } },
                  log: { reason: 'expired', detail: 'the Quick Connect request expired (or Jellyfin forgot it) before it was authorized' },
                };
              }
            }
            if (Date.now() + ASK_EVERY_MS >= until) {
              return request ? pending(request) : { json: { status: 200, body: { state: 'pending' } } };
            }
            await sleep(ASK_EVERY_MS);
          }
        },
      },

      finish: {
        method: 'POST',
        once: true,
        async handle(step) {
          const bound = await claimOrFollow(requests, step);
          if (!bound) return { page: { status: 400, notice: NO_LONGER_VALID } };
          if ('redirect' in bound) return bound;
          let settled = false;
          try {
            const request = requestOf(bound);
            if (!request) {
              await requests.restore(step.uid, bound);
              settled = true;
              return { page: { status: 200, notice: 'Jellyfin has not confirmed the code yet. Try again.' } };
            }
            const got = await jellyfin.exchange(request.secret, request.deviceId);
            if (got === 'pending') {
              // Not authorized yet, or Jellyfin no longer knows the request (it expired, or
              // Jellyfin restarted): only the second needs a new code.
              if (await jellyfin.state(request.secret, request.deviceId) === 'expired') {
                return { page: { status: 400, notice: NO_LONGER_VALID } };
              }
              await requests.restore(step.uid, bound);
              settled = true;
              return { page: { status: 200, notice: 'Jellyfin has not confirmed the code yet. Enter it in Jellyfin, then try again.' } };
            }
            // guestlist needs nothing more from Jellyfin: the token it was handed goes now.
            await jellyfin.revoke(got.accessToken, request.deviceId).catch(() => false);
            return { identity: identityOf(got.user, config) };
          } catch (err) {
            if (!(err instanceof Refusal)) throw err;
            if (err.reason === 'source-unavailable') {
              // Jellyfin may well still hold the authorization: the same code can finish later.
              await requests.restore(step.uid, bound);
              settled = true;
              return { page: { status: 503, notice: err.message }, log: logOnly(err) };
            }
            return { refusal: err };
          } finally {
            if (!settled) await requests.settle(step.uid);
          }
        },
      },
    },
  };
}
