// guestlist's Plex sign-in, in the browser. It creates the PIN here (so Plex sees the person's
// own IP and shows no "Security Alert"), binds it to this login on the server, opens Plex's
// approval page in a popup (opened within the click, so no popup blocker stops it) and watches
// the PIN; once Plex approves, it hands over to the server, which checks everything itself.
// Where no popup can open, the same tab goes to Plex and Plex forwards it back.
'use strict';

(() => {
  const root = document.getElementById('plex');
  if (!root) return;
  const cfg = root.dataset;
  const button = document.getElementById('plex-sign-in');
  const statusBox = document.getElementById('plex-status');
  const statusText = document.getElementById('plex-status-text');
  const notice = document.getElementById('plex-notice');
  const finishForm = document.getElementById('plex-finish');
  const plexQuery = new URLSearchParams({ 'X-Plex-Product': cfg.product, 'X-Plex-Client-Identifier': cfg.clientId });

  const busy = (text) => {
    button.disabled = true;
    statusBox.hidden = false;
    statusText.textContent = text;
    notice.textContent = '';
  };
  const fail = (text) => {
    button.disabled = false;
    statusBox.hidden = true;
    notice.textContent = text;
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // X-Plex-* go in the query string, which Plex accepts, so these stay simple CORS requests.
  async function createPin() {
    const res = await fetch(`${cfg.api}/api/v2/pins?strong=true&${plexQuery}`, { method: 'POST', headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`Plex answered ${res.status}`);
    return res.json();
  }

  async function readPin(id) {
    const res = await fetch(`${cfg.api}/api/v2/pins/${encodeURIComponent(id)}?${plexQuery}`, { headers: { Accept: 'application/json' } });
    if (res.status === 429) return { retryLater: true };
    if (res.status === 404) return { expired: true };
    if (!res.ok) throw new Error(`Plex answered ${res.status}`);
    return res.json();
  }

  // The code is the PIN's secret half: sending it proves this page made the PIN.
  async function bindPin(pin) {
    const res = await fetch(cfg.bind, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: pin.id, code: pin.code }), credentials: 'same-origin' });
    if (res.status !== 204) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error || 'guestlist could not start the Plex sign-in.');
    }
  }

  function authUrl(code, forwardUrl) {
    const params = new URLSearchParams({ clientID: cfg.clientId, code, 'context[device][product]': cfg.product });
    if (forwardUrl) params.set('forwardUrl', forwardUrl);
    return `${cfg.app}#?${params}`;
  }

  // Each press starts a new attempt; an older one still watching its PIN stops.
  let attempt = 0;

  // Once a second, as Plex asks; slower when it says "too many requests"; until Plex approves or
  // the PIN expires. A closed Plex window does not stop the watch: a browser may report a popup
  // as closed once it shows another site, and Plex may approve just as its window closes.
  async function waitForApproval(pin, popup, mine) {
    const deadline = Date.parse(pin.expiresAt) || Date.now() + 15 * 60_000;
    let delay = 1000;
    let toldClosed = false;
    while (Date.now() < deadline && mine === attempt) {
      await sleep(delay);
      const state = await readPin(pin.id).catch(() => ({ retryLater: true }));
      if (state.expired) return 'expired';
      if (state.retryLater) {
        delay = Math.min(delay * 2, 8000);
        continue;
      }
      delay = 1000;
      if (state.authToken) return 'approved';
      if (popup.closed && !toldClosed) {
        toldClosed = true;
        fail('The Plex window was closed before the sign-in was approved. Press the button to try again.');
      }
    }
    return mine === attempt ? 'expired' : 'superseded';
  }

  async function signIn(popup) {
    const mine = ++attempt;
    busy('Opening Plex…');
    const pin = await createPin();
    await bindPin(pin);
    if (!popup || popup.closed) {
      // No popup (a blocker, some mobile browsers): go to Plex in this tab; it forwards back.
      busy('Going to Plex…');
      window.location.assign(authUrl(pin.code, cfg.return));
      return;
    }
    popup.location.href = authUrl(pin.code);
    busy('Waiting for you to approve the sign-in in the Plex window…');
    const outcome = await waitForApproval(pin, popup, mine);
    if (outcome === 'approved') {
      busy('Signing you in…');
      if (!popup.closed) popup.close();
      finishForm.submit();
    } else if (outcome === 'expired') {
      if (!popup.closed) popup.close();
      fail('The Plex sign-in expired. Press the button to try again.');
    }
  }

  button.addEventListener('click', () => {
    // Opened now, inside the click, or browsers block it; it shows our page until Plex loads.
    const w = 520;
    const h = 720;
    const left = Math.max(0, window.screenX + (window.outerWidth - w) / 2);
    const top = Math.max(0, window.screenY + (window.outerHeight - h) / 2);
    const popup = window.open('/static/plex-popup.html', 'plex-sign-in', `popup,width=${w},height=${h},left=${left},top=${top}`);
    signIn(popup).catch((err) => {
      if (popup && !popup.closed) popup.close();
      fail(`${err.message || err} Try again in a moment.`);
    });
  });
})();
