// guestlist's Jellyfin sign-in, in the browser. The server starts a Quick Connect request at
// Jellyfin and keeps its secret; this page only ever sees the six digits to type into Jellyfin.
// It then asks the server (which asks Jellyfin) until the code is authorized, and hands over to
// the server to finish; or shows that the code expired, with a button for a new one.
'use strict';

(() => {
  const root = document.getElementById('jellyfin');
  if (!root) return;
  const urls = root.dataset;
  const $ = (id) => document.getElementById(id);
  const start = $('jellyfin-start');
  const button = $('jellyfin-sign-in');
  const codeBox = $('jellyfin-code-box');
  const codeText = $('jellyfin-code');
  const statusText = $('jellyfin-status-text');
  const expiredBox = $('jellyfin-expired');
  const renew = $('jellyfin-renew');
  const notice = $('jellyfin-notice');
  const finishForm = $('jellyfin-finish');
  const open = $('jellyfin-open');
  if (open.getAttribute('href')) $('jellyfin-open-wrap').hidden = false;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const show = (box) => {
    for (const b of [start, codeBox, expiredBox]) b.hidden = b !== box;
  };
  // Three and three, as people read and type a six-digit code; copied, it is still the six digits.
  const showCode = (code) => {
    if (codeText.dataset.code === code) return;
    codeText.dataset.code = code;
    codeText.replaceChildren(...[code.slice(0, 3), code.slice(3)].map((part) => {
      const span = document.createElement('span');
      span.textContent = part;
      return span;
    }));
  };

  async function post(url) {
    const res = await fetch(url, { method: 'POST', headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    const body = await res.json().catch(() => ({}));
    const retryAfter = Number(res.headers.get('Retry-After')) || 0;
    return { status: res.status, body, retryAfter };
  }

  // Each code has one watcher; a new code (or a second press) makes the old one stop.
  let attempt = 0;

  async function watch(mine) {
    let delay = 0;
    while (mine === attempt) {
      if (delay) await sleep(delay);
      let res;
      try {
        res = await post(urls.wait);
      } catch {
        notice.textContent = 'guestlist is not answering. Still trying…';
        delay = Math.min((delay || 2000) * 2, 30_000);
        continue;
      }
      if (mine !== attempt) return;
      if (res.status === 200) {
        notice.textContent = '';
        delay = 0;
        const { state, code } = res.body;
        if (state === 'authorized') {
          statusText.textContent = 'Jellyfin confirmed it. Signing you in…';
          finishForm.submit();
          return;
        }
        if (state === 'expired') {
          show(expiredBox);
          return;
        }
        if (code) showCode(code);
        continue;
      }
      notice.textContent = res.body.error || `guestlist answered ${res.status}.`;
      // The sign-in itself is gone: nothing to wait for.
      if (res.status === 400 || res.status === 404) {
        show(start);
        return;
      }
      delay = Math.max(res.retryAfter * 1000, Math.min((delay || 2000) * 2, 30_000));
    }
  }

  async function getCode() {
    const mine = ++attempt;
    button.disabled = true;
    renew.disabled = true;
    notice.textContent = '';
    try {
      let res = await post(urls.code);
      // Another page of this sign-in is making the code right now: it is ready in a moment.
      if (res.status === 409) {
        await sleep(1000);
        res = await post(urls.code);
      }
      if (res.status !== 200) throw new Error(res.body.error || `guestlist answered ${res.status}.`);
      if (res.body.state === 'authorized') {
        finishForm.submit();
        return;
      }
      showCode(res.body.code);
      statusText.textContent = 'Waiting for Jellyfin…';
      show(codeBox);
      watch(mine);
    } catch (err) {
      notice.textContent = err.message || String(err);
    } finally {
      button.disabled = false;
      renew.disabled = false;
    }
  }

  button.addEventListener('click', getCode);
  renew.addEventListener('click', getCode);
})();
