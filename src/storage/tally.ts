import type { Share } from '../network.ts';
import type { TakeResult } from './store.ts';

// The memory store's count of places held (pending sign-ins, bound upstream requests), per share
// (a network, each of its wider prefixes) until each expires, so that every share can be capped
// and the whole kept bounded. A key may weigh more than one place (a large pending sign-in).
// Entries leave from the front once expired: kept in the order they came, which is nearly expiry
// order. A stale entry that waits behind a live one only ever makes a count refuse early, never
// forget early.

export class Tally {
  private readonly entries = new Map<string, { shares: string[]; weight: number; until: number }>();
  private readonly counts = new Map<string, number>();
  private readonly max: number;
  private held = 0;

  constructor(max: number) {
    this.max = max;
  }

  count(share: string): number {
    return this.counts.get(share) ?? 0;
  }

  take(key: string, shares: Share[], until: number, weight = 1, now = Date.now()): TakeResult {
    this.prune(now);
    const entry = this.entries.get(key);
    if (entry && entry.until > now) return 'taken';
    if (entry) this.release(key);
    if (shares.some((s) => this.count(s.name) + weight > s.limit)) return 'network-full';
    if (this.held + weight > this.max) return 'full';
    this.entries.set(key, { shares: shares.map((s) => s.name), weight, until });
    for (const s of shares) this.counts.set(s.name, this.count(s.name) + weight);
    this.held += weight;
    return 'ok';
  }

  release(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.held -= entry.weight;
    for (const name of entry.shares) {
      const n = this.count(name) - entry.weight;
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
