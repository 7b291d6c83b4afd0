import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as sea from 'node:sea';

// views/, static/ and package.json: files beside src/ (or dist/) normally, and assets embedded in
// the binary when guestlist runs as a single executable (npm run build:binary).

const embedded = sea.isSea();

function onDisk(path: string): string {
  // Only reached outside the single executable, where this module is real ESM.
  return fileURLToPath(new URL(`../${path}`, import.meta.url));
}

export function readAsset(path: string): Buffer {
  return embedded ? Buffer.from(sea.getRawAsset(path) as ArrayBuffer) : readFileSync(onDisk(path));
}

/** File names directly inside an asset directory, e.g. listAssets('static'). */
export function listAssets(dir: string): string[] {
  if (!embedded) return readdirSync(onDisk(dir));
  return sea.getAssetKeys().filter((k) => k.startsWith(`${dir}/`)).map((k) => k.slice(dir.length + 1)).filter((n) => !n.includes('/'));
}
