import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { cookieSigner } from '../src/keys/cookie-signer.ts';

// koa's default cookie signature is Keygrip's: HMAC-SHA1 of "name=value" under the secret,
// base64 with + / = made URL-safe. Ours must be byte-for-byte the same, so that cookies set
// by an older guestlist (or another instance) still verify.

const keygripSign = (secret: string, data: string) =>
  createHmac('sha1', secret).update(data).digest('base64').replace(/\/|\+|=/g, (x) => ({ '/': '_', '+': '-', '=': '' })[x]!);

test('signs exactly as koa\'s default Keygrip does', () => {
  const signer = cookieSigner(['current-secret-0123456789', 'old-secret']);
  for (const data of ['_interaction=abc', '_session=Zx9-_', 'x=' + 'é'.repeat(40), '']) {
    assert.equal(signer.sign(data), keygripSign('current-secret-0123456789', data));
  }
});

test('verifies with the current secret or a previous one, and says which', () => {
  const signer = cookieSigner(['new', 'old']);
  assert.equal(signer.index('_session=1', keygripSign('new', '_session=1')), 0);
  assert.equal(signer.index('_session=1', keygripSign('old', '_session=1')), 1);
  assert.equal(signer.verify('_session=1', keygripSign('old', '_session=1')), true);
});

test('refuses a wrong, tampered, truncated, padded or non-string signature', () => {
  const signer = cookieSigner(['secret']);
  const good = signer.sign('_session=1');
  assert.equal(signer.index('_session=2', good), -1);
  assert.equal(signer.index('_session=1', keygripSign('other', '_session=1')), -1);
  assert.equal(signer.index('_session=1', `${good.slice(0, -1)}${good.at(-1) === 'A' ? 'B' : 'A'}`), -1);
  assert.equal(signer.index('_session=1', good.slice(0, -1)), -1);
  assert.equal(signer.index('_session=1', `${good}=`), -1);
  assert.equal(signer.index('_session=1', ''), -1);
  assert.equal(signer.index('_session=1', undefined as unknown as string), -1);
  assert.equal(signer.verify('_session=1', 'x'), false);
});

test('needs at least one secret', () => {
  assert.throws(() => cookieSigner([]), /at least one secret/);
});
