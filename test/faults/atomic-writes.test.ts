import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadOrCreateKeys, writeFileAtomic } from '../../src/keys/keys.ts';
import { tempDir } from '../helpers.ts';

describe('keys and secrets on disk', () => {
  test('are created 0600 in a 0700 directory and loaded, not regenerated, on the next start', async () => {
    const dir = join(await tempDir(), 'data');
    const first = await loadOrCreateKeys(dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const f of await readdir(dir)) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    const second = await loadOrCreateKeys(dir);
    assert.equal(second.signingKeys[0]!.kid, first.signingKeys[0]!.kid);
    assert.deepEqual(second.cookieSecrets, first.cookieSecrets);
  });

  test('a write that cannot complete leaves the old file whole and no temporary file behind', async () => {
    const dir = await tempDir();
    const target = join(dir, 'signing-keys.json');
    await writeFile(target, 'old contents');
    // A directory where the rename must land: the rename fails after the data was written.
    const blocked = join(dir, 'blocked');
    await mkdir(blocked);
    await writeFile(join(blocked, 'x'), 'x');
    await assert.rejects(writeFileAtomic(blocked, 'new contents'));
    assert.deepEqual((await readdir(dir)).sort(), ['blocked', 'signing-keys.json']);
    await writeFileAtomic(target, 'new contents');
    assert.equal(await readFile(target, 'utf8'), 'new contents');
    assert.deepEqual((await readdir(dir)).sort(), ['blocked', 'signing-keys.json']);
  });

  test('a damaged key file stops the start with a message naming it, instead of a new key', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'signing-keys.json'), '{"keys": [');
    await assert.rejects(loadOrCreateKeys(dir), /signing-keys\.json is not valid JSON\. Restore it from a backup/);
  });
});
