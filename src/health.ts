// What the operator console's Health section lists: one line per thing guestlist depends on (each
// source's upstream, the store, the signing keys), each asked when the page is opened, never
// cached. Sources and stores answer for themselves; nothing in a line is secret (no token, no
// password in a URL), because the line is shown on a page.

export interface HealthItem {
  name: string;
  ok: boolean;
  detail: string;
}

export type HealthReport = HealthItem[];

export interface HealthCheck {
  name: string;
  check(): Promise<HealthItem[]>;
}

/** All the checks at once; one that throws is a line saying so, not a broken page. */
export function healthOf(checks: HealthCheck[]): () => Promise<HealthReport> {
  return async () => (await Promise.all(checks.map(async ({ name, check }) => {
    try {
      return await check();
    } catch (err) {
      return [{ name, ok: false, detail: (err as Error).message }];
    }
  }))).flat();
}

/** A size in bytes as people read it. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 2 ** 20).toFixed(1)} MB`;
}

/** A duration as people read it: "3 days", "2 hours", "5 minutes". */
export function age(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'day'], [3_600_000, 'hour'], [60_000, 'minute']];
  for (const [size, unit] of units) {
    const n = Math.floor(ms / size);
    if (n >= 1) return `${n} ${unit}${n === 1 ? '' : 's'}`;
  }
  return 'less than a minute';
}
