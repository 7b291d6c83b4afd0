// Things that anonymous requests make the server remember (pending sign-ins, sign-in bindings),
// counted per client network until each expires, so that one network's share can be capped and
// the whole kept bounded. Entries leave from the front once expired: kept in the order they came,
// which is nearly expiry order. A stale entry that waits behind a live one only ever makes the
// count refuse early, never forget early.

export class NetworkTally<K> {
  private readonly entries = new Map<K, { network: string; until: number }>();
  private readonly perNetwork = new Map<string, number>();

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  count(network: string): number {
    return this.perNetwork.get(network) ?? 0;
  }

  add(key: K, network: string, until: number): void {
    this.entries.set(key, { network, until });
    this.perNetwork.set(network, this.count(network) + 1);
  }

  delete(key: K): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    const n = this.count(entry.network) - 1;
    if (n > 0) this.perNetwork.set(entry.network, n);
    else this.perNetwork.delete(entry.network);
  }

  /** Drops what has expired by `now`, from the front. */
  prune(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.until > now) break;
      this.delete(key);
    }
  }
}
