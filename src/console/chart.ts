import { escapeHtml, Html } from '../html.ts';

// The console's chart of sign-in attempts per hour, split by outcome: an inline SVG made on the
// server (no script, nothing for the CSP to allow), coloured by class from guestlist.css.

/** The outcomes the chart stacks, bottom up, each with its class and its word in the legend. */
export const OUTCOMES = [
  ['signed-in', 'Signed in'],
  ['refused', 'Refused'],
  ['revoked', 'Ended'],
  ['kept', 'Kept while down'],
  ['abandoned', 'Gave up'],
] as const;

const WIDTH = 720;
const HEIGHT = 180;
const BOTTOM = 22;

export function hourlyChart(hours: { hour: number; counts: Record<string, number> }[]): Html {
  const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
  const most = Math.max(1, ...hours.map((h) => total(h.counts)));
  const slot = WIDTH / hours.length;
  const scale = (HEIGHT - BOTTOM - 8) / most;
  const bars = hours.map((h, i) => {
    let y = HEIGHT - BOTTOM;
    const x = i * slot + 2;
    const rects = OUTCOMES.map(([outcome, label]) => {
      const n = h.counts[outcome] ?? 0;
      if (!n) return '';
      const height = n * scale;
      y -= height;
      return `<rect class="bar ${outcome}" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot - 4).toFixed(1)}" height="${height.toFixed(1)}"><title>${n} ${escapeHtml(label.toLowerCase())}</title></rect>`;
    }).join('');
    const hourOfDay = new Date(h.hour * 3600_000).getUTCHours();
    const tick = i % 6 === 0 ? `<text class="tick" x="${(x + (slot - 4) / 2).toFixed(1)}" y="${HEIGHT - 6}" text-anchor="middle">${String(hourOfDay).padStart(2, '0')}:00</text>` : '';
    return rects + tick;
  }).join('');
  const sum = hours.reduce((n, h) => n + total(h.counts), 0);
  const legend = OUTCOMES.map(([outcome, label]) => `<span class="key ${outcome}">${escapeHtml(label)}</span>`).join(' ');
  return new Html(`<figure class="chart">
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Sign-in attempts per hour over the last ${hours.length} hours: ${sum} in all">
<line class="axis" x1="0" y1="${HEIGHT - BOTTOM}" x2="${WIDTH}" y2="${HEIGHT - BOTTOM}"/>${bars}
</svg>
<figcaption>Sign-in attempts per hour, last ${hours.length} hours (UTC), ${sum} in all, most in one hour ${most}. ${legend}</figcaption>
</figure>`);
}
