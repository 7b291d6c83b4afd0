import type { Share } from '../network.ts';
import type { TakeResult } from './store.ts';

// The memory store's count of places held (pending sign-ins, bound upstream requests), per share
// (a network, each of its wider prefixes) until each place expires, so that every share can be
// capped and the whole kept bounded. Entries leave from the front once expired: kept in the
// order they came, which is nearly expiry order. A stale entry that waits behind a live one only
// ever makes a count refuse early, never forget early.

export class Tally {
  private readonly entries = new Map<string, { shares: string[]; until: number }>();
  private readonly counts = new Map<string, number>();
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.entries.size;
  }

  count(share: string): number {
    return this.counts.get(share) ?? 0;
  }

  take(key: string, shares: Share[], until: number, now = Date.now()): TakeResult {
    this.prune(now);
    const held = this.entries.get(key);
    if (held && held.until > now) return 'taken';
    if (held) this.release(key);
    if (shares.some((s) => this.count(s.name) >= s.limit)) return 'network-full';
    if (this.entries.size >= this.max) return 'full';
    this.entries.set(key, { shares: shares.map((s) => s.name), until });
    for (const s of shares) this.counts.set(s.name, this.count(s.name) + 1);
    return 'ok';
  }

  release(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    for (const name of entry.shares) {
      const n = this.count(name) - 1;
      if (n > 0) this.counts.set(name, n);
      else this.counts.delete(name);
    }
  }

  /** Drops what has expired by `now`, from the front. */
  private prune(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.until > now) break;
      this.release(key);
    }
  }
}
