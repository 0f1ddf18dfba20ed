// A small SVG line-chart writer for `mtc report`: several series, optional confidence bands,
// horizontal reference lines, nice ticks, linear or log axes, a legend below the plot.
// Output is deterministic (same spec → same bytes: fixed number formatting, no ids, no
// dates) and well-formed XML (all text escaped). No dependencies.

/** Okabe & Ito's colour-blind-safe palette, in an order that reads well on white (yellow left out). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'] as const;

/** Marker shapes, cycled with the colours so series differ in more than hue. */
const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'triangle-down', 'cross'] as const;

export interface Series {
  label: string;
  x: readonly number[];
  y: readonly number[];
  /** lower and upper edge of a band drawn behind the line (e.g. a 95% CI), index-aligned with x */
  lo?: readonly number[];
  hi?: readonly number[];
  /** a palette index (cycled) or a CSS colour; default: the series' index */
  color?: number | string;
  /** marker shape index (cycled); default: same as the colour index */
  marker?: number;
  dashed?: boolean;
  /** draw point markers; default: when the series has at most 40 points */
  markers?: boolean;
}

/** A horizontal line across the plot, e.g. an unprojected baseline. */
export interface RefLine {
  label: string;
  y: number;
  color?: number | string;
  /** default true */
  dashed?: boolean;
}

export interface ChartSpec {
  title: string;
  /** a smaller second line under the title */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  refLines?: readonly RefLine[];
  logX?: boolean;
  logY?: boolean;
  /** explicit x tick positions (e.g. iterations 1..T, or T ∈ {1, 2, 4, 8}); default: nice ticks */
  xTicks?: readonly number[];
  /** plot area size in px (the image adds margins and the legend); default 640 × 340 */
  width?: number;
  height?: number;
}

const FONT = 'Helvetica, Arial, sans-serif';
const MARGIN = { left: 72, right: 24, top: 20, bottom: 52 };
const LEGEND_ROW = 20;

/** Escape text for XML content and attribute values; drop characters XML 1.0 forbids. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A coordinate with at most two decimals and no "-0" (deterministic across platforms). */
export function coord(v: number): string {
  const r = Math.round(v * 100) / 100;
  return (r === 0 ? 0 : r).toString();
}

/**
 * "Nice" tick values covering [min, max] (Heckbert, Graphics Gems 1990): steps of 1, 2 or 5
 * times a power of ten, about `target` of them; the domain widens to the outer ticks.
 */
export function niceTicks(min: number, max: number, target = 5): { ticks: number[]; step: number; lo: number; hi: number } {
  if (!(max > min)) throw new RangeError(`niceTicks needs max > min, got [${min}, ${max}]`);
  const range = niceNumber(max - min, false);
  const step = niceNumber(range / Math.max(1, target - 1), true);
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  const count = Math.round((hi - lo) / step);
  for (let i = 0; i <= count; i++) ticks.push(roundTo(lo + i * step, step));
  return { ticks, step, lo: ticks[0], hi: ticks[ticks.length - 1] };
}

function niceNumber(x: number, round: boolean): number {
  const exp = Math.floor(Math.log10(x));
  const f = x / 10 ** exp;
  let nf: number;
  if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * 10 ** exp;
}

/** Round v to the decimals of `step` (removes 0.30000000000000004-style noise). */
function roundTo(v: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) + 1;
  const r = Number(v.toFixed(Math.min(20, decimals)));
  return r === 0 ? 0 : r;
}

/** Ticks for a log axis over [min, max] (both > 0): powers of ten, with 2 and 5 when few decades. */
export function logTicks(min: number, max: number): number[] {
  const k0 = Math.floor(Math.log10(min) + 1e-9);
  const k1 = Math.ceil(Math.log10(max) - 1e-9);
  const decades = Math.log10(max / min);
  const mults = decades <= 2 ? [1, 2, 5] : decades <= 4 ? [1, 3] : [1];
  const ticks: number[] = [];
  for (let k = k0; k <= k1; k++) {
    for (const m of mults) {
      const v = Number((m * 10 ** k).toPrecision(12));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  if (ticks.length >= 2) return ticks;
  // Less than a decade: plain nice values inside the range, placed on the log scale.
  return niceTicks(min, max, 4).ticks.filter((v) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9) && v > 0);
}

/** A tick label: the fewest decimals that tell the ticks apart; exponent form for huge/tiny values. */
function tickLabels(ticks: readonly number[]): string[] {
  const abs = ticks.filter((v) => v !== 0).map(Math.abs);
  if (abs.length > 0 && (Math.max(...abs) >= 1e6 || Math.max(...abs) < 1e-3)) {
    return ticks.map((v) => (v === 0 ? '0' : v.toExponential(3).replace(/\.?0+e/, 'e').replace('e+', 'e')));
  }
  const d = decimalsNeeded(ticks);
  return ticks.map((v) => {
    const s = v.toFixed(d);
    return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
  });
}

function decimalsNeeded(values: readonly number[]): number {
  for (let d = 0; d < 8; d++) {
    if (values.every((v) => Math.abs(Number(v.toFixed(d)) - v) <= 1e-9 * Math.max(1, Math.abs(v)))) return d;
  }
  return 8;
}

interface Axis {
  ticks: number[];
  /** value → pixel */
  map: (v: number) => number;
  valid: (v: number) => boolean;
}

function makeAxis(values: readonly number[], log: boolean, explicit: readonly number[] | undefined, p0: number, p1: number): Axis {
  const valid = (v: number) => Number.isFinite(v) && (!log || v > 0);
  const vals = values.filter(valid);
  const ex = (explicit ?? []).filter(valid);
  let min = Math.min(...vals, ...ex);
  let max = Math.max(...vals, ...ex);
  if (!Number.isFinite(min)) {
    min = log ? 1 : 0;
    max = log ? 10 : 1;
  } else if (min === max) {
    if (log) {
      min /= 2;
      max *= 2;
    } else {
      const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
      min -= pad;
      max += pad;
    }
  }
  let lo: number;
  let hi: number;
  let ticks: number[];
  if (log) {
    ticks = ex.length > 0 ? [...ex] : logTicks(min, max);
    const pad = (Math.log10(max) - Math.log10(min)) * 0.04;
    lo = Math.log10(min) - pad;
    hi = Math.log10(max) + pad;
    const f = (v: number) => p0 + ((Math.log10(v) - lo) / (hi - lo)) * (p1 - p0);
    return { ticks, map: f, valid };
  }
  if (ex.length > 0) {
    ticks = [...ex];
    const pad = (max - min) * 0.04;
    lo = min - pad;
    hi = max + pad;
  } else {
    const n = niceTicks(min, max);
    ticks = n.ticks;
    lo = n.lo;
    hi = n.hi;
  }
  return { ticks, map: (v) => p0 + ((v - lo) / (hi - lo)) * (p1 - p0), valid };
}

function colorOf(c: number | string | undefined, index: number): string {
  if (typeof c === 'string') return c;
  const i = c ?? index;
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

function markerPath(shape: (typeof MARKERS)[number], x: number, y: number, color: string): string {
  const r = 3.5;
  const X = (v: number) => coord(x + v);
  const Y = (v: number) => coord(y + v);
  switch (shape) {
    case 'circle':
      return `<circle cx="${coord(x)}" cy="${coord(y)}" r="${r}" fill="${color}"/>`;
    case 'square':
      return `<rect x="${X(-r)}" y="${Y(-r)}" width="${2 * r}" height="${2 * r}" fill="${color}"/>`;
    case 'triangle':
      return `<path d="M${X(0)} ${Y(-r - 0.8)}L${X(r + 0.6)} ${Y(r)}L${X(-r - 0.6)} ${Y(r)}Z" fill="${color}"/>`;
    case 'triangle-down':
      return `<path d="M${X(0)} ${Y(r + 0.8)}L${X(r + 0.6)} ${Y(-r)}L${X(-r - 0.6)} ${Y(-r)}Z" fill="${color}"/>`;
    case 'diamond':
      return `<path d="M${X(0)} ${Y(-r - 1)}L${X(r + 1)} ${Y(0)}L${X(0)} ${Y(r + 1)}L${X(-r - 1)} ${Y(0)}Z" fill="${color}"/>`;
    case 'cross':
      return `<path d="M${X(-r)} ${Y(-r)}L${X(r)} ${Y(r)}M${X(-r)} ${Y(r)}L${X(r)} ${Y(-r)}" stroke="${color}" stroke-width="2" fill="none"/>`;
  }
}

/** Indices runs [start, end) where `ok(i)` holds, in order. */
function runs(n: number, ok: (i: number) => boolean): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = -1;
  for (let i = 0; i <= n; i++) {
    if (i < n && ok(i)) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      out.push([start, i]);
      start = -1;
    }
  }
  return out;
}

/** An SVG document (a string ending in a newline) plotting `spec`. */
export function lineChart(spec: ChartSpec): string {
  const pw = spec.width ?? 640;
  const ph = spec.height ?? 340;
  const refLines = spec.refLines ?? [];
  const titleH = 26 + (spec.subtitle ? 18 : 0);
  const left = MARGIN.left;
  const top = MARGIN.top + titleH;
  const legendItems = spec.series.length + refLines.length;
  const W = left + pw + MARGIN.right;
  const H = top + ph + MARGIN.bottom + (legendItems > 0 ? legendItems * LEGEND_ROW + 8 : 0);

  const xs = spec.series.flatMap((s) => s.x);
  const ys = [...spec.series.flatMap((s) => [...s.y, ...(s.lo ?? []), ...(s.hi ?? [])]), ...refLines.map((r) => r.y)];
  const ax = makeAxis(xs, spec.logX ?? false, spec.xTicks, left, left + pw);
  const ay = makeAxis(ys, spec.logY ?? false, undefined, top + ph, top);
  const hasData = spec.series.some((s) => s.x.some((x, i) => ax.valid(x) && ay.valid(s.y[i]))) || refLines.some((r) => ay.valid(r.y));

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}" font-size="12">`);
  out.push(`<title>${escapeXml(spec.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${coord(W / 2)}" y="${MARGIN.top + 8}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${coord(W / 2)}" y="${MARGIN.top + 27}" text-anchor="middle" font-size="12" fill="#444444">${escapeXml(spec.subtitle)}</text>`);

  // Grid, axes, ticks.
  out.push('<g stroke="#e3e3e3" stroke-width="1">');
  for (const t of ay.ticks) out.push(`<line x1="${left}" y1="${coord(ay.map(t))}" x2="${left + pw}" y2="${coord(ay.map(t))}"/>`);
  for (const t of ax.ticks) out.push(`<line x1="${coord(ax.map(t))}" y1="${top}" x2="${coord(ax.map(t))}" y2="${top + ph}"/>`);
  out.push('</g>');
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#555555" stroke-width="1"/>`);
  const yl = tickLabels(ay.ticks);
  const xl = tickLabels(ax.ticks);
  out.push('<g fill="#222222">');
  ay.ticks.forEach((t, i) => out.push(`<text x="${left - 6}" y="${coord(ay.map(t) + 4)}" text-anchor="end">${escapeXml(yl[i])}</text>`));
  ax.ticks.forEach((t, i) => out.push(`<text x="${coord(ax.map(t))}" y="${top + ph + 17}" text-anchor="middle">${escapeXml(xl[i])}</text>`));
  out.push('</g>');
  out.push(`<text x="${coord(left + pw / 2)}" y="${top + ph + 38}" text-anchor="middle" font-size="13">${escapeXml(spec.xLabel + (spec.logX ? ' (log scale)' : ''))}</text>`);
  out.push(`<text transform="translate(18 ${coord(top + ph / 2)}) rotate(-90)" text-anchor="middle" font-size="13">${escapeXml(spec.yLabel + (spec.logY ? ' (log scale)' : ''))}</text>`);
  if (!hasData) out.push(`<text x="${coord(left + pw / 2)}" y="${coord(top + ph / 2)}" text-anchor="middle" fill="#888888">no data</text>`);

  const ok = (x: number, y: number) => ax.valid(x) && ay.valid(y);
  // Bands first, so every line lies on top of every band.
  spec.series.forEach((s, si) => {
    const { lo, hi } = s;
    if (!lo || !hi) return;
    const color = colorOf(s.color, si);
    for (const [a, b] of runs(s.x.length, (i) => ok(s.x[i], lo[i]) && ok(s.x[i], hi[i]))) {
      if (b - a < 2) continue;
      const pts: string[] = [];
      for (let i = a; i < b; i++) pts.push(`${coord(ax.map(s.x[i]))},${coord(ay.map(hi[i]))}`);
      for (let i = b - 1; i >= a; i--) pts.push(`${coord(ax.map(s.x[i]))},${coord(ay.map(lo[i]))}`);
      out.push(`<polygon points="${pts.join(' ')}" fill="${color}" fill-opacity="0.18" stroke="none"/>`);
    }
  });
  refLines.forEach((r, ri) => {
    if (!ay.valid(r.y)) return;
    const color = colorOf(r.color, spec.series.length + ri);
    const dash = r.dashed === false ? '' : ' stroke-dasharray="2 4"';
    out.push(`<line x1="${left}" y1="${coord(ay.map(r.y))}" x2="${left + pw}" y2="${coord(ay.map(r.y))}" stroke="${color}" stroke-width="1.5"${dash}/>`);
  });
  spec.series.forEach((s, si) => {
    const color = colorOf(s.color, si);
    const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
    for (const [a, b] of runs(s.x.length, (i) => ok(s.x[i], s.y[i]))) {
      const d: string[] = [];
      for (let i = a; i < b; i++) d.push(`${i === a ? 'M' : 'L'}${coord(ax.map(s.x[i]))} ${coord(ay.map(s.y[i]))}`);
      out.push(`<path d="${d.join('')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"${dash}/>`);
    }
    if (s.markers ?? s.x.length <= 40) {
      const shape = MARKERS[(s.marker ?? (typeof s.color === 'number' ? s.color : si)) % MARKERS.length];
      for (let i = 0; i < s.x.length; i++) if (ok(s.x[i], s.y[i])) out.push(markerPath(shape, ax.map(s.x[i]), ay.map(s.y[i]), color));
    }
  });

  // Legend: one row per entry under the plot, so long labels never overlap the data.
  let ly = top + ph + MARGIN.bottom + 8;
  spec.series.forEach((s, si) => {
    const color = colorOf(s.color, si);
    const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
    const band = s.lo && s.hi ? `<rect x="${left}" y="${ly - 7}" width="30" height="14" fill="${color}" fill-opacity="0.18"/>` : '';
    const shape = MARKERS[(s.marker ?? (typeof s.color === 'number' ? s.color : si)) % MARKERS.length];
    const mark = s.markers ?? s.x.length <= 40 ? markerPath(shape, left + 15, ly, color) : '';
    out.push(`${band}<line x1="${left}" y1="${ly}" x2="${left + 30}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>${mark}<text x="${left + 38}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
    ly += LEGEND_ROW;
  });
  refLines.forEach((r, ri) => {
    const color = colorOf(r.color, spec.series.length + ri);
    const dash = r.dashed === false ? '' : ' stroke-dasharray="2 4"';
    out.push(`<line x1="${left}" y1="${ly}" x2="${left + 30}" y2="${ly}" stroke="${color}" stroke-width="1.5"${dash}/><text x="${left + 38}" y="${ly + 4}">${escapeXml(r.label)}</text>`);
    ly += LEGEND_ROW;
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
