import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRfc2047 } from '../src/sources/tailscale/rfc2047.ts';

// `tailscale serve` sends non-ASCII names as RFC 2047 encoded words; what the decoder makes of them.

describe('RFC 2047 header values', () => {
  test('decodes Q and B words and joins adjacent ones', () => {
    assert.equal(decodeRfc2047('=?utf-8?q?Jos=C3=A9_Garc=C3=ADa?='), 'José García');
    assert.equal(decodeRfc2047('=?utf-8?q?Jos=C3=A9?= =?utf-8?q?_Garc=C3=ADa?='), 'José García');
    assert.equal(decodeRfc2047('=?UTF-8?B?Sm9zw6k=?='), 'José');
    assert.equal(decodeRfc2047('plain ascii'), 'plain ascii');
    assert.equal(decodeRfc2047('=?utf-8?q?bad=ZZ?='), '=?utf-8?q?bad=ZZ?=');
  });
});
