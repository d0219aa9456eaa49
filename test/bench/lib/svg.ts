// A small line-chart renderer to SVG (no dependency): axes with ticks and grid, linear or log
// scales, one polyline per series, reference lines, a legend. Enough for latency percentile
// curves and close-delay CDFs; every label is text, so the files diff and render anywhere.

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  /** Shown in the legend (several series may share one entry: the first with a label shows it). */
  legend?: string;
}

export interface Axis {
  label: string;
  scale: 'linear' | 'log' | 'percentile';
  min?: number;
  max?: number;
  /** Formats a tick value. */
  format?: (v: number) => string;
}

export interface Chart {
  title: string;
  subtitle?: string;
  x: Axis;
  y: Axis;
  series: Series[];
  /** Reference lines: a target, a limit. */
  hlines?: { y: number; label: string; color: string }[];
  vlines?: { x: number; label: string; color: string }[];
  /** Where the legend box goes inside the plot (where the curves leave room). */
  legend?: 'top-left' | 'bottom-right';
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (v: number) => (Math.round(v * 10) / 10).toString();

/** Percentile p (0–100) as the "nines" axis position: 0 at p=0, 1 at 90, 2 at 99, 3 at 99.9 … capped at 5. */
function nines(p: number): number {
  return Math.min(5, -Math.log10(Math.max(1e-5, 1 - p / 100)));
}

function transform(axis: Axis, v: number): number {
  if (axis.scale === 'log') return Math.log10(Math.max(v, 1e-9));
  if (axis.scale === 'percentile') return nines(v);
  return v;
}

function niceLinearTicks(min: number, max: number, count = 6): number[] {
  const span = max - min || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function ticksFor(axis: Axis, lo: number, hi: number): number[] {
  if (axis.scale === 'percentile') return [0, 90, 99, 99.9, 99.99, 100].filter((p) => nines(p) <= hi + 1e-9);
  if (axis.scale === 'log') {
    const out: number[] = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      const t = Math.log10(v);
      if (t >= lo - 1e-9 && t <= hi + 1e-9) out.push(v);
    }
    return out;
  }
  return niceLinearTicks(lo, hi);
}

function domain(axis: Axis, values: number[]): [number, number] {
  const t = values.filter(Number.isFinite).map((v) => transform(axis, v));
  let lo = axis.min !== undefined ? transform(axis, axis.min) : Math.min(...t);
  let hi = axis.max !== undefined ? transform(axis, axis.max) : Math.max(...t);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (axis.scale === 'log') [lo, hi] = [Math.floor(lo), Math.ceil(hi)];
  if (axis.scale === 'linear' && axis.min === undefined && lo > 0) lo = 0;
  if (hi === lo) hi = lo + 1;
  return [lo, hi];
}

export function renderChart(c: Chart): string {
  const W = c.width ?? 760;
  const H = c.height ?? 440;
  const m = { left: 74, right: 20, top: c.subtitle ? 62 : 44, bottom: 58 };
  const legendEntries = c.series.filter((s, i) => c.series.findIndex((o) => (o.legend ?? o.name) === (s.legend ?? s.name)) === i);
  const legendH = 18 * legendEntries.length;
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const xs = [...c.series.flatMap((s) => s.points.map((p) => p[0])), ...(c.vlines ?? []).map((l) => l.x)];
  const ys = [...c.series.flatMap((s) => s.points.map((p) => p[1])), ...(c.hlines ?? []).map((l) => l.y)];
  const [x0, x1] = domain(c.x, xs);
  const [y0, y1] = domain(c.y, ys);
  const X = (v: number) => m.left + ((transform(c.x, v) - x0) / (x1 - x0)) * plotW;
  const Y = (v: number) => m.top + plotH - ((transform(c.y, v) - y0) / (y1 - y0)) * plotH;
  const fx = c.x.format ?? ((v: number) => String(v));
  const fy = c.y.format ?? ((v: number) => String(v));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`);
  if (c.subtitle) out.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(c.subtitle)}</text>`);
  // Grid and ticks.
  for (const t of ticksFor(c.x, x0, x1)) {
    const x = num(X(t));
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + plotH}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${x}" y="${m.top + plotH + 16}" text-anchor="middle">${esc(fx(t))}</text>`);
  }
  for (const t of ticksFor(c.y, y0, y1)) {
    const y = num(Y(t));
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + plotW}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(fy(t))}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + plotW / 2}" y="${H - 14}" text-anchor="middle">${esc(c.x.label)}</text>`);
  out.push(`<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(c.y.label)}</text>`);
  // Reference lines.
  for (const l of c.hlines ?? []) {
    const y = num(Y(l.y));
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + plotW}" y2="${y}" stroke="${l.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.left + plotW - 6}" y="${Number(y) + 15}" text-anchor="end" fill="${l.color}">${esc(l.label)}</text>`);
  }
  for (const l of c.vlines ?? []) {
    const x = num(X(l.x));
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + plotH}" stroke="${l.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    // Labels of lines near the right edge go on their left.
    const left = Number(x) > m.left + plotW * 0.75;
    out.push(`<text x="${Number(x) + (left ? -5 : 5)}" y="${m.top + 28}"${left ? ' text-anchor="end"' : ''} fill="${l.color}">${esc(l.label)}</text>`);
  }
  // Series.
  out.push(`<g fill="none" stroke-width="2" stroke-linejoin="round">`);
  for (const s of c.series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${num(X(x))},${num(Y(y))}`);
    if (pts.length > 0) out.push(`<polyline points="${pts.join(' ')}" stroke="${s.color}"${s.dashed ? ' stroke-dasharray="5 3"' : ''}><title>${esc(s.name)}</title></polyline>`);
  }
  out.push('</g>');
  // Legend inside the plot, on a white box.
  const lw = Math.min(plotW - 20, 12 + 7 * Math.max(...legendEntries.map((s) => (s.legend ?? s.name).length), 10));
  const bottomRight = c.legend === 'bottom-right';
  const lx = bottomRight ? m.left + plotW - 10 - lw : m.left + 10;
  const ly = bottomRight ? m.top + plotH - 10 - (legendH + 8) : m.top + 10;
  out.push(`<rect x="${lx}" y="${ly}" width="${lw}" height="${legendH + 8}" fill="#ffffff" fill-opacity="0.9" stroke="#bbb"/>`);
  legendEntries.forEach((s, i) => {
    const y = ly + 14 + i * 18;
    out.push(`<line x1="${lx + 6}" y1="${y - 4}" x2="${lx + 30}" y2="${y - 4}" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    out.push(`<text x="${lx + 36}" y="${y}">${esc(s.legend ?? s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
