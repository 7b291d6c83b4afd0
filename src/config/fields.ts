// Readers for config values that report each problem with its key path, so one run of
// `guestlist check` shows them all. Used by the core config and by each source's section.

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export function formatListen(listen: { host: string; port: number }): string {
  return `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
}

export function unknownKeys(obj: Record<string, unknown>, known: string[], at: string, problems: string[]): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = known.find((k) => editDistance(k, key) <= 2);
    problems.push(`${at ? `${at}.` : ''}${key}: unknown key${near ? ` (did you mean "${near}"?)` : ''}`);
  }
}

export function stringList(value: unknown, at: string, problems: string[], { allowEmpty }: { allowEmpty: boolean }): string[] | undefined {
  if (typeof value === 'string') value = [value];
  if (!Array.isArray(value)) {
    problems.push(`${at}: must be a list`);
    return undefined;
  }
  if (!allowEmpty && value.length === 0) {
    problems.push(`${at}: must not be empty`);
    return undefined;
  }
  const bad = value.findIndex((v) => typeof v !== 'string' || v === '');
  if (bad !== -1) {
    problems.push(`${at}[${bad}]: must be a non-empty string`);
    return undefined;
  }
  return value as string[];
}

export function optionalString(value: unknown, at: string, problems: string[]): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') {
    problems.push(`${at}: must be a non-empty string`);
    return undefined;
  }
  return value;
}

export function optionalBoolean(value: unknown, at: string, problems: string[]): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') {
    problems.push(`${at}: must be true or false, not ${JSON.stringify(value)}`);
    return undefined;
  }
  return value;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A length of time in seconds: a whole number of seconds, or "90s", "15m", "1h", "1d"; 0 is allowed. */
export function optionalDuration(value: unknown, at: string, problems: string[]): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  const m = typeof value === 'string' ? /^(\d+)\s*([smhd])?$/.exec(value.trim()) : null;
  if (!m) {
    problems.push(`${at}: ${JSON.stringify(value)} is not a length of time; write it as seconds (900) or with a unit: "30s", "15m", "1h"`);
    return undefined;
  }
  return Number(m[1]) * UNIT_SECONDS[m[2] ?? 's']!;
}
