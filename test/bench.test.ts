import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

// The benchmark is run by hand (npm run bench) and its figures are never asserted; this only
// keeps it working: a tiny run must print its table and a JSON line with every figure.
test('npm run bench runs end to end and prints its table and JSON line', () => {
  const run = spawnSync(process.execPath, [new URL('./bench/run.ts', import.meta.url).pathname], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, BENCH_LOGINS: '30', BENCH_FLOOD: '200', BENCH_STARTS: '1', BENCH_IDLE_MS: '300' },
    timeout: 120_000,
  });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.match(lines[0]!, /^guestlist benchmark: Node 24\./);
  for (const start of ['restart', 'fresh container', 'fresh container, no shipped cache']) {
    assert.ok(lines.some((l) => l.startsWith(`| cold start to first discovery 200: ${start} (median of 1)`)), start);
  }
  // Each of issue 14's figures is printed beside its target.
  for (const [row, target] of [
    ['server CPU per zero-click login', '(target <= 6x)'],
    ['complete logins/s at concurrency 50', 'target >= 400'],
    ['browser round trips to guestlist per zero-click login', 'target 1'],
    ['idle RSS after start and one login', '(target <= 1.25x)'],
    ['idle RSS after the burst', '(target <= +15 MB)'],
    ['cold start to first discovery 200: restart', '(target <= 2.0x)'],
    ['cold start to first discovery 200: fresh container (', '(target <= 2.0x)'],
  ] as const) {
    const printed = lines.find((l) => l.startsWith(`| ${row}`));
    assert.ok(printed, row);
    assert.ok(printed.includes(target), `${row}: ${printed}`);
  }
  assert.match(lines.find((l) => l.startsWith('| browser round trips'))!, /\| 1 +\|/, 'a zero-click login is one round trip');
  const figures = JSON.parse(lines.at(-1)!) as { rss_mb: Record<string, number>; logins: Record<string, number>; cold_start_ms: Record<string, number>; rs256: Record<string, number> };
  assert.deepEqual(Object.keys(figures.cold_start_ms), ['guestlist', 'hello', 'ratio', 'fresh_container', 'fresh_container_ratio', 'fresh_container_without_cache']);
  for (const group of [figures.rss_mb, figures.logins, figures.cold_start_ms, figures.rs256]) {
    for (const [k, v] of Object.entries(group)) assert.ok(Number.isFinite(v) && v > 0, `${k} = ${v}`);
  }
});
